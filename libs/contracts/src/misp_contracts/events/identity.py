"""Identity's published events: users, roles and authkeys (ARCHITECTURE §3, §4).

Each event carries the aggregate's integer id (MISP's `id`) and its stream UUID. Updates carry the
state after the change and `changes: {field: [old, new]}`; secrets never appear (an authkey is
carried only as its HMAC-SHA256 under the deployment pepper).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from misp_contracts.events.base import Change, DomainEvent, register

USER_TOPIC = "misp.identity.user.v1"
ROLE_TOPIC = "misp.identity.role.v1"
AUTHKEY_TOPIC = "misp.identity.authkey.v1"
AUTH_TOPIC = "misp.identity.auth.v1"
REGISTRATION_TOPIC = "misp.identity.registration.v1"
USER_SETTING_TOPIC = "misp.identity.user-setting.v1"
SESSION_TOPIC = "misp.identity.session.v1"

# Role permission flags in MISP's UI order (Role::generatePermFlags), then the four level flags.
PERM_FLAGS: tuple[str, ...] = (
    "perm_site_admin", "perm_admin", "perm_sync", "perm_audit", "perm_auth", "perm_regexp_access",
    "perm_tagger", "perm_tag_editor", "perm_template", "perm_sharing_group", "perm_delegate",
    "perm_sighting", "perm_object_template", "perm_galaxy_editor", "perm_decaying",
    "perm_publish_zmq", "perm_publish_kafka", "perm_warninglist", "perm_view_feed_correlations",
    "perm_analyst_data", "perm_skip_otp",
)
LEVEL_FLAGS: tuple[str, ...] = ("perm_add", "perm_modify", "perm_modify_org", "perm_publish")


class _State(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class UserState(_State):
    """A user as other services may know it: no password, no key."""

    id: int
    uuid: str
    email: str
    org_id: int
    role_id: int
    disabled: bool = False
    autoalert: bool = False
    contactalert: bool = False
    termsaccepted: bool = False
    change_pw: bool = False
    nids_sid: int = 0
    server_id: int = 0
    gpgkey: str | None = None
    gpg_fingerprint: str | None = None
    certif_public: str | None = None
    invited_by: int = 0
    expiration: datetime | None = None
    date_created: datetime | None = None
    date_modified: datetime | None = None
    last_login: datetime | None = None
    # Added later (optional, so older readers and events stay valid).
    current_login: datetime | None = None
    last_pw_change: datetime | None = None
    newsread: int = 0
    force_logout: bool = False
    notification_daily: bool = False
    notification_weekly: bool = False
    notification_monthly: bool = False
    totp_is_set: bool = False  # a TOTP secret is active (the secret itself never travels)


class RoleState(_State):
    """A role with every permission flag of MISP's `roles` table."""

    id: int
    name: str
    permission: int = Field(0, ge=0, le=3)
    perm_site_admin: bool = False
    perm_admin: bool = False
    perm_sync: bool = False
    perm_audit: bool = False
    perm_auth: bool = False
    perm_regexp_access: bool = False
    perm_tagger: bool = False
    perm_tag_editor: bool = False
    perm_template: bool = False
    perm_sharing_group: bool = False
    perm_delegate: bool = False
    perm_sighting: bool = False
    perm_object_template: bool = False
    perm_galaxy_editor: bool = False
    perm_decaying: bool = False
    perm_publish_zmq: bool = False
    perm_publish_kafka: bool = False
    perm_warninglist: bool = False
    perm_view_feed_correlations: bool = False
    perm_analyst_data: bool = False
    perm_skip_otp: bool = False
    perm_add: bool = False
    perm_modify: bool = False
    perm_modify_org: bool = False
    perm_publish: bool = False
    perm_full: bool = False
    default_role: bool = False
    restricted_to_site_admin: bool = False
    enforce_rate_limit: bool = False
    rate_limit_count: int = 0
    memory_limit: str = ""
    max_execution_time: str = ""
    created: datetime | None = None
    modified: datetime | None = None


class AuthKeyState(_State):
    """An advanced authkey: only the HMAC of the key and its first/last four characters."""

    id: int
    uuid: str
    user_id: int
    key_hmac: str  # hex HMAC-SHA256(pepper, raw key)
    authkey_start: str
    authkey_end: str
    expiration: int = 0  # unix time, 0 = never
    read_only: bool = False
    allowed_ips: list[str] | None = None
    comment: str = ""
    created: datetime | None = None


@register
class UserCreated(DomainEvent):
    type: ClassVar[str] = "misp.identity.user.created.v1"
    topic: ClassVar[str] = USER_TOPIC
    user: UserState


@register
class UserUpdated(DomainEvent):
    type: ClassVar[str] = "misp.identity.user.updated.v1"
    topic: ClassVar[str] = USER_TOPIC
    user: UserState
    changes: dict[str, Change] = Field(default_factory=dict)


@register
class UserDeleted(DomainEvent):
    type: ClassVar[str] = "misp.identity.user.deleted.v1"
    topic: ClassVar[str] = USER_TOPIC
    user_id: int
    uuid: str
    email: str
    org_id: int


@register
class RoleCreated(DomainEvent):
    type: ClassVar[str] = "misp.identity.role.created.v1"
    topic: ClassVar[str] = ROLE_TOPIC
    role: RoleState


@register
class RoleUpdated(DomainEvent):
    type: ClassVar[str] = "misp.identity.role.updated.v1"
    topic: ClassVar[str] = ROLE_TOPIC
    role: RoleState
    changes: dict[str, Change] = Field(default_factory=dict)


@register
class RoleDeleted(DomainEvent):
    type: ClassVar[str] = "misp.identity.role.deleted.v1"
    topic: ClassVar[str] = ROLE_TOPIC
    role_id: int
    name: str


@register
class AuthKeyCreated(DomainEvent):
    type: ClassVar[str] = "misp.identity.authkey.created.v1"
    topic: ClassVar[str] = AUTHKEY_TOPIC
    authkey: AuthKeyState


@register
class AuthKeyUpdated(DomainEvent):
    type: ClassVar[str] = "misp.identity.authkey.updated.v1"
    topic: ClassVar[str] = AUTHKEY_TOPIC
    authkey: AuthKeyState
    changes: dict[str, Change] = Field(default_factory=dict)


@register
class AuthKeyDeleted(DomainEvent):
    type: ClassVar[str] = "misp.identity.authkey.deleted.v1"
    topic: ClassVar[str] = AUTHKEY_TOPIC
    authkey_id: int
    user_id: int
    key_hmac: str


# ---- later additions: the default role, logins and passwords, registrations, user settings ----


@register
class DefaultRoleChanged(DomainEvent):
    """The AdminSetting `default_role` (used by admin/users/add) was set or unset."""

    type: ClassVar[str] = "misp.identity.role.default-changed.v1"
    topic: ClassVar[str] = ROLE_TOPIC
    role_id: int | None = None
    previous_role_id: int | None = None


class _AuthEvent(DomainEvent):
    """An entry of identity's auth topic: MISP's login / logout / login_fail / change_pw rows."""

    topic: ClassVar[str] = AUTH_TOPIC
    title: str  # MISP's Log title
    user_id: int = 0  # 0: no such user (MISP logs it as SYSTEM)
    email: str | None = None
    org_id: int | None = None
    ip: str | None = None
    user_agent: str | None = None


@register
class UserLoggedIn(_AuthEvent):
    type: ClassVar[str] = "misp.identity.auth.logged-in.v1"
    at: datetime | None = None


@register
class UserLoginFailed(_AuthEvent):
    type: ClassVar[str] = "misp.identity.auth.login-failed.v1"
    username: str
    blocked: bool = False  # this failure reached SecureAuth.amount


@register
class UserLoggedOut(_AuthEvent):
    type: ClassVar[str] = "misp.identity.auth.logged-out.v1"
    forced: bool = False  # an administrator ended every session of the user
    sessions: int = 1


@register
class UserPasswordChanged(_AuthEvent):
    """The user changed their own password (MISP's `change_pw`); the password never travels."""

    type: ClassVar[str] = "misp.identity.auth.password-changed.v1"


@register
class UserPasswordReset(_AuthEvent):
    """Someone else set the user's password (an administrator's edit or add)."""

    type: ClassVar[str] = "misp.identity.auth.password-reset.v1"


@register
class LoginBlockLifted(_AuthEvent):
    """An administrator lifted a brute-force block of (IP, username)."""

    type: ClassVar[str] = "misp.identity.auth.block-lifted.v1"
    username: str
    blocked_ip: str | None = None  # None: every IP


class RegistrationState(_State):
    """A self-registration request (MISP's `Inbox` row of type `registration`)."""

    id: int
    uuid: str
    email: str
    data: dict[str, Any] = Field(default_factory=dict)  # the request as sent, minus secrets
    ip: str | None = None
    user_agent: str | None = None
    created: datetime | None = None


@register
class RegistrationSubmitted(DomainEvent):
    type: ClassVar[str] = "misp.identity.registration.submitted.v1"
    topic: ClassVar[str] = REGISTRATION_TOPIC
    registration: RegistrationState


@register
class RegistrationAccepted(DomainEvent):
    type: ClassVar[str] = "misp.identity.registration.accepted.v1"
    topic: ClassVar[str] = REGISTRATION_TOPIC
    registration_id: int
    user_id: int


@register
class RegistrationDiscarded(DomainEvent):
    type: ClassVar[str] = "misp.identity.registration.discarded.v1"
    topic: ClassVar[str] = REGISTRATION_TOPIC
    registration_id: int


class UserSettingState(_State):
    id: int
    user_id: int
    setting: str
    value: Any = None
    timestamp: datetime | None = None


@register
class UserSettingSet(DomainEvent):
    type: ClassVar[str] = "misp.identity.user-setting.set.v1"
    topic: ClassVar[str] = USER_SETTING_TOPIC
    user_setting: UserSettingState
    changes: dict[str, Change] = Field(default_factory=dict)


@register
class UserSettingDeleted(DomainEvent):
    type: ClassVar[str] = "misp.identity.user-setting.deleted.v1"
    topic: ClassVar[str] = USER_SETTING_TOPIC
    id: int
    user_id: int
    setting: str


# ---- TOTP two-factor login: the facts only, never the secret ---------------------------------


class _TotpEvent(DomainEvent):
    """A user's TOTP set or removed: `user` is the state after, `title` MISP's log entry."""

    topic: ClassVar[str] = USER_TOPIC
    user: UserState
    title: str
    ip: str | None = None


@register
class UserTotpSet(_TotpEvent):
    """The user enrolled a TOTP secret (MISP's `users/totp_new`): from now on their web login
    asks for a code."""

    type: ClassVar[str] = "misp.identity.user.totp-set.v1"


@register
class UserTotpRemoved(_TotpEvent):
    """An administrator removed the user's TOTP secret (MISP's `users/totp_delete`)."""

    type: ClassVar[str] = "misp.identity.user.totp-removed.v1"


# ---- browser sessions: projected by every service beside the authkeys (ARCHITECTURE §4) --------


@register
class SessionStarted(DomainEvent):
    """A user logged in: the session token, as its peppered HMAC only (the authkeys' HMAC,
    misp_platform.auth.keys), authenticates them at every service until `expires_at`."""

    type: ClassVar[str] = "misp.identity.session.started.v1"
    topic: ClassVar[str] = SESSION_TOPIC
    session_hmac: str
    user_id: int
    expires_at: datetime


@register
class SessionEnded(DomainEvent):
    """A session no longer authenticates anyone; one event per session, also when a password
    change, a reset, a disabled account or a forced logout ends all of a user's sessions."""

    type: ClassVar[str] = "misp.identity.session.ended.v1"
    topic: ClassVar[str] = SESSION_TOPIC
    session_hmac: str
    user_id: int
    reason: str  # logout | password_changed | password_reset | user_disabled | forced_logout |
    # user_deleted
