"""``auth.test``, ``team.info``, ``users.*`` and ``usergroups.*``."""

from __future__ import annotations

import time
from typing import Any

from sandbox.slack.wire import SlackError, bool_arg, paginate, req_str
from sandbox.slack.workspace import Workspace

JSON = dict[str, Any]


class UsersApi(Workspace):
    """Who is who: the bot (``auth.test``), the team, its users and user groups."""

    def _auth_test(self, args: JSON) -> JSON:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _team_info(self, args: JSON) -> JSON:
        return {"team": {"id": self.team_id, "name": self.team_name, "domain": self.team_domain}}

    def _users_info(self, args: JSON) -> JSON:
        return {"user": self._user(args).to_api(self.team_id)}

    def _users_list(self, args: JSON) -> JSON:
        page, meta = paginate(list(self.users.values()), args, 200, 1000)
        return {
            "members": [u.to_api(self.team_id) for u in page],
            "cache_ts": int(time.time()),
            "response_metadata": meta,
        }

    def _users_lookup_by_email(self, args: JSON) -> JSON:
        email = req_str(args, "email").strip().lower()
        for user in self.users.values():
            if user.email is not None and user.email.lower() == email and not user.deleted:
                return {"user": user.to_api(self.team_id)}
        raise SlackError("users_not_found")

    def _usergroups_list(self, args: JSON) -> JSON:
        include_users = bool_arg(args, "include_users")
        include_disabled = bool_arg(args, "include_disabled")
        groups = [g for g in self.usergroups.values() if g.enabled or include_disabled]
        return {"usergroups": [g.to_api(self.team_id, include_users=include_users) for g in groups]}

    def _usergroups_users_list(self, args: JSON) -> JSON:
        group = self.usergroups.get(req_str(args, "usergroup"))
        if group is None or (not group.enabled and not bool_arg(args, "include_disabled")):
            raise SlackError("no_such_subteam")
        return {"users": list(group.users)}
