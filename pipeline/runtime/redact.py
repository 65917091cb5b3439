"""Credentials never reach logs, error lines, reports, run metadata or output columns.

Users put them where fsspec accepts them: in a URL's user info (``https://user:pass@host/...``)
or in a signed URL's query (``?X-Amz-Signature=...``, Azure ``sig=``, ``token=``). Every place
forgetfilter writes text a person or a log collector reads goes through ``redact``; the URL itself
is still used, unredacted, to open the file.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s\"']*):[^/@\s\"']*@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&][^=&\s\"']*(?:token|signature|sig|secret|password|passwd|credential|key)[^=&\s\"']*=)[^&\s\"'#]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with URL passwords and secret-looking query values replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _SECRET_QUERY.sub(lambda m: m["key"] + "***", text)
