"""Safe templating: one substitution function, a context per use, hostile label values."""

from __future__ import annotations

import pytest

from bot.core.templating import (
    Context,
    TemplateError,
    check_template,
    escape_promql_string,
    escape_regex,
    escape_template,
    render_k8s_name,
    render_plain,
    render_promql,
    render_text,
    render_url,
    sample_label_sets,
    sample_value,
    substitute,
    template_variables,
)

HOSTILE = {
    "namespace": "kube-system",
    "shell": "x; rm -rf /",
    "promql": '"} or vector(1) #',
    "newline": "a\nb",
    "backslash": "a\\",
    "slack": "<!channel> & <https://evil|click>",
    "regex": "api.*|.+",
    "upper": "Api",
}


# --------------------------------------------------------------------------- syntax


def test_variable_forms() -> None:
    labels = {"a": "1", "b_2": "2"}
    assert render_plain("$a ${b_2} ${c:-three} $$a $1 $(date) $", labels) == "1 2 three $a $1 $(date) $"
    names = [(v.name, v.default) for v in template_variables("$a ${b} ${c:-d} $$e")]
    assert names == [("a", None), ("b", None), ("c", "d")]


def test_default_used_only_when_label_missing() -> None:
    assert render_plain("${ns:-default}", {}) == "default"
    assert render_plain("${ns:-default}", {"ns": ""}) == ""
    assert render_plain("${ns:-default}", {"ns": "prod"}) == "prod"


def test_missing_label_is_an_error_naming_it() -> None:
    with pytest.raises(TemplateError) as info:
        render_text("pod $pod is down", {})
    assert info.value.label == "pod"
    assert "'pod'" in str(info.value)


@pytest.mark.parametrize("template", ["${", "${bad name}", "${1x}", "${a:-b"])
def test_malformed_variables_are_rejected(template: str) -> None:
    with pytest.raises(TemplateError):
        template_variables(template)


# --------------------------------------------------------------------------- PromQL


def test_promql_value_is_escaped_inside_its_string_literal() -> None:
    query = render_promql('rate(x{namespace="$namespace", s="$promql"}[5m])', HOSTILE)
    assert query == 'rate(x{namespace="kube-system", s="\\"} or vector(1) #"}[5m])'


def test_promql_escapes_newlines_backslashes_and_control_characters() -> None:
    assert render_promql('x{a="$newline"}', HOSTILE) == 'x{a="a\\nb"}'
    assert render_promql('x{a="$backslash"}', HOSTILE) == 'x{a="a\\\\"}'
    assert render_promql('x{a="$v"}', {"v": "\x00\x1b\u2028"}) == 'x{a="\\x00\\x1b\\u2028"}'
    assert escape_promql_string("it's", "'") == "it\\'s"


def test_promql_single_quoted_strings() -> None:
    assert render_promql("x{a='$v'}", {"v": 'it\'s "q"'}) == "x{a='it\\'s \"q\"'}"


def test_promql_regex_matcher_values_are_quoted_to_match_themselves() -> None:
    assert render_promql('x{s=~"$regex"}', HOSTILE) == 'x{s=~"api\\\\.\\\\*\\\\|\\\\.\\\\+"}'
    # Literal regex text in the template stays a regex; only the value is quoted.
    assert render_promql('x{s=~"${v}-.*", t!~ "$v"}', {"v": "a.b"}) == 'x{s=~"a\\\\.b-.*", t!~ "a\\\\.b"}'
    assert escape_regex("a.b(c)") == "a\\.b\\(c\\)"


@pytest.mark.parametrize(
    "template",
    [
        "up{namespace=$namespace}",
        "up{job=~${job}}",
        "sum(x) > $threshold",
        "x{a=`$v`}",
        "x offset $$5m",
    ],
)
def test_promql_variable_outside_a_string_is_rejected(template: str) -> None:
    with pytest.raises(TemplateError):
        check_template(template, Context.PROMQL)
    with pytest.raises(TemplateError):
        render_promql(template, {"namespace": "a", "job": "b", "threshold": "1", "v": "c"})


def test_promql_comments_and_dollars_inside_strings() -> None:
    assert render_promql('x{a="^api$"} # $comment', {}) == 'x{a="^api$"} # $comment'
    assert render_promql('x{a="cost $$5"}', {}) == 'x{a="cost $5"}'


def test_promql_unterminated_string_is_rejected() -> None:
    with pytest.raises(TemplateError):
        check_template('x{a="b}', Context.PROMQL)


def test_hostile_value_cannot_break_out_of_the_selector() -> None:
    query = render_promql('up{job="$job"}', {"job": '"} or vector(1) or up{job="'})
    # The whole value is one string literal: exactly two unescaped quotes in the query.
    unescaped = [i for i, ch in enumerate(query) if ch == '"' and query[i - 1] != "\\"]
    assert len(unescaped) == 2


# --------------------------------------------------------------------------- Kubernetes names


def test_k8s_name_accepts_valid_names() -> None:
    assert render_k8s_name("$d-worker", {"d": "birthday-scheduler"}) == "birthday-scheduler-worker"
    assert render_k8s_name("$ns", {"ns": "kube-system"}, dns_label=True) == "kube-system"
    assert render_k8s_name("a.b", {}) == "a.b"


@pytest.mark.parametrize("label", ["shell", "promql", "upper", "newline"])
def test_k8s_name_rejects_hostile_values_naming_label_and_value(label: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_k8s_name(f"${label}", HOSTILE)
    assert info.value.label == label
    assert info.value.value == HOSTILE[label]
    assert repr(HOSTILE[label]) in str(info.value)


def test_k8s_label_rejects_dots_and_length() -> None:
    with pytest.raises(TemplateError):
        render_k8s_name("$ns", {"ns": "a.b"}, dns_label=True)
    with pytest.raises(TemplateError):
        render_k8s_name("$ns", {"ns": "a" * 64}, dns_label=True)


def test_k8s_name_checks_the_result_too() -> None:
    # Each value is made of valid characters but the result starts with '-'.
    with pytest.raises(TemplateError) as info:
        render_k8s_name("$a$b", {"a": "-", "b": "x"})
    assert info.value.label == "a"
    with pytest.raises(TemplateError):
        render_k8s_name("$a", {"a": ""})


# --------------------------------------------------------------------------- text, URL, plain


def test_text_escapes_slack_control_characters_in_values_only() -> None:
    rendered = render_text("*Pod* <$slack>", HOSTILE)
    assert rendered == "*Pod* <&lt;!channel&gt; &amp; &lt;https://evil|click&gt;>"
    assert "<!channel>" not in rendered


def test_url_percent_encodes_values() -> None:
    url = render_url("https://grafana/d/x?var-ns=$namespace&q=$promql", HOSTILE)
    assert url == "https://grafana/d/x?var-ns=kube-system&q=%22%7D%20or%20vector%281%29%20%23"
    assert render_url("https://h/$p", {"p": "../admin?x=1&y"}) == "https://h/..%2Fadmin%3Fx%3D1%26y"


def test_plain_leaves_values_alone() -> None:
    assert render_plain("$shell", HOSTILE) == "x; rm -rf /"


def test_substitute_is_the_one_function() -> None:
    for context in Context:
        assert isinstance(substitute("plain", {}, context), str)


# --------------------------------------------------------------------------- validation helpers


def test_sample_values_are_dns_labels() -> None:
    for name in ["namespace", "Pod_Name", "__x__", "a" * 100]:
        value = sample_value(name)
        assert render_k8s_name("$v", {"v": value}, dns_label=True) == value


def test_check_template_validates_defaults() -> None:
    check_template("${namespace:-default}", Context.K8S_LABEL)
    with pytest.raises(TemplateError) as info:
        check_template("${namespace:-Not_Valid}", Context.K8S_LABEL)
    assert "default" in str(info.value)
    sets = sample_label_sets("$a ${b:-x}", "$b")
    assert sets[0] == {"a": "sample-a", "b": "sample-b"}
    assert sets[1] == {"a": "sample-a", "b": "sample-b"}  # b is required by the 2nd template


def test_escape_template_round_trips() -> None:
    text = "cost $100 ${x} $$"
    assert render_text(escape_template(text), {}) == text
