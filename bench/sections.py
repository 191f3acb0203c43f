"""Each benchmark owns one section of bench/RESULTS.md, between its own markers."""

from __future__ import annotations

from pathlib import Path

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench/{name}:start -->", f"<!-- bench/{name}:end -->"


def write_section(path: Path, name: str, text: str) -> None:
    """Replace this benchmark's section (between its markers) or append it; keep the rest."""
    start, end = markers(name)
    body = text if text.startswith(start) else f"{start}\n{text.rstrip()}\n{end}\n"
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if start in current and end in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        updated = before + body + (("\n" + after) if after else "")
    else:
        updated = current.rstrip("\n") + ("\n\n" if current.strip() else "") + body
    path.write_text(updated, encoding="utf-8")
