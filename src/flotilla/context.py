"""Who is calling: the identity every service call acts for."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestContext:
    """The caller, as established by the auth strategy (token, keystone, noauth)."""

    user_id: str
    project_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    user_name: str | None = None
    project_name: str | None = None
    domain_id: str | None = None
    auth_token: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def can_write(self) -> bool:
        """Members and admins write; readers only read."""
        return self.is_admin or "member" in self.roles or "_member_" in self.roles

    @property
    def can_read(self) -> bool:
        return self.can_write or "reader" in self.roles


SYSTEM = RequestContext(user_id="flotilla", project_id="flotilla", roles=frozenset({"admin"}))
