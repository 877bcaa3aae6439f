# ruff: noqa: E501
"""MISP's seeded import regexps and org blocklist examples (data, not code).

Taken from MISP's `INSTALL/MYSQL.sql` at commit bb0909a3 (2.5.1, the version whose API this
platform speaks): 29 Windows-path rules, plus the two example organisation blocklist entries.
The values are as MySQL stores them (SQL string escapes resolved), so a `\\\\` in a replacement
is PHP's escaped backslash."""

from __future__ import annotations

# (id, regexp, replacement); type is ALL for every one. A blank replacement blocks the value.
SEEDED_REGEXPS: tuple[tuple[int, str, str], ...] = (
    (1, '/.:.ProgramData./i', '%ALLUSERSPROFILE%\\\\'),
    (2, '/.:.Documents and Settings.All Users./i', '%ALLUSERSPROFILE%\\\\'),
    (3, '/.:.Program Files.Common Files./i', '%COMMONPROGRAMFILES%\\\\'),
    (4, '/.:.Program Files (x86).Common Files./i', '%COMMONPROGRAMFILES(x86)%\\\\'),
    (5, '/.:.Users\\\\(.*?)\\\\AppData.Local.Temp./i', '%TEMP%\\\\'),
    (6, '/.:.ProgramData./i', '%PROGRAMDATA%\\\\'),
    (7, '/.:.Program Files./i', '%PROGRAMFILES%\\\\'),
    (8, '/.:.Program Files (x86)./i', '%PROGRAMFILES(X86)%\\\\'),
    (9, '/.:.Users.Public./i', '%PUBLIC%\\\\'),
    (10, '/.:.Documents and Settings\\\\(.*?)\\\\Local Settings.Temp./i', '%TEMP%\\\\'),
    (11, '/.:.Users\\\\(.*?)\\\\AppData.Local.Temp./i', '%TEMP%\\\\'),
    (12, '/.:.Users\\\\(.*?)\\\\AppData.Local./i', '%LOCALAPPDATA%\\\\'),
    (13, '/.:.Users\\\\(.*?)\\\\AppData.Roaming./i', '%APPDATA%\\\\'),
    (14, '/.:.Users\\\\(.*?)\\\\Application Data./i', '%APPDATA%\\\\'),
    (15, '/.:.Windows\\\\(.*?)\\\\Application Data./i', '%APPDATA%\\\\'),
    (16, '/.:.Users\\\\(.*?)\\\\/i', '%USERPROFILE%\\\\'),
    (17, '/.:.DOCUME~1.\\\\(.*?)\\\\/i', '%USERPROFILE%\\\\'),
    (18, '/.:.Documents and Settings\\\\(.*?)\\\\/i', '%USERPROFILE%\\\\'),
    (19, '/.:.Windows./i', '%WINDIR%\\\\'),
    (20, '/.:.Windows./i', '%WINDIR%\\\\'),
    (21, '/.REGISTRY.USER.S(-[0-9]{1}){2}-[0-9]{2}(-[0-9]{9}){1}(-[0-9]{10}){1}-[0-9]{9}-[0-9]{4}/i', 'HKCU'),
    (22, '/.REGISTRY.USER.S(-[0-9]{1}){2}-[0-9]{2}(-[0-9]{10}){2}-[0-9]{9}-[0-9]{4}/i', 'HKCU'),
    (23, '/.REGISTRY.USER.S(-[0-9]{1}){2}-[0-9]{2}(-[0-9]{10}){3}-[0-9]{4}/i', 'HKCU'),
    (24, '/.REGISTRY.MACHINE./i', 'HKLM\\\\'),
    (25, '/.Registry.Machine./i', 'HKLM\\\\'),
    (26, '/%USERPROFILE%.Application Data.Microsoft.UProof/i', ''),
    (27, '/%USERPROFILE%.Local Settings.History/i', ''),
    (28, '/%APPDATA%.Microsoft.UProof/i ', ''),
    (29, '/%LOCALAPPDATA%.Microsoft.Windows.Temporary Internet Files/i', ''),
)

# (org_uuid, org_name, comment)
SEEDED_ORG_BLOCKLIST: tuple[tuple[str, str, str], ...] = (
    ("58d38339-7b24-4386-b4b4-4c0f950d210f", "Setec Astrononomy", "default example"),
    ("58d38326-eda8-443a-9fa8-4e12950d210f", "Acme Finance", "default example"),
)
