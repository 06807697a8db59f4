"""Blob trigger paths: ``container/prefix{name}suffix`` to a container, a listing prefix and a matcher."""
from __future__ import annotations

import re
from dataclasses import dataclass

from local.funchost.errors import AppLoadError

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class BlobPathPattern:
    container: str
    blob_pattern: str

    @classmethod
    def parse(cls, path: str, *, where: str) -> "BlobPathPattern":
        """Split a resolved trigger path; the container part must be literal, as in the real host."""
        container, sep, blob_pattern = path.strip("/").partition("/")
        if "{" in container or "}" in container or not container:
            raise AppLoadError(f"{where}: path {path!r} must start with a literal container name")
        return cls(container=container, blob_pattern=blob_pattern if sep else "{name}")

    @property
    def prefix(self) -> str:
        """The literal start of blob names, used to narrow the container listing."""
        return self.blob_pattern.split("{", 1)[0]

    def match(self, blob_name: str) -> dict[str, str] | None:
        """Binding data (``{"name": ...}``) if ``blob_name`` fits the pattern, else None."""
        match = self._regex().fullmatch(blob_name)
        return match.groupdict() if match else None

    def _regex(self) -> re.Pattern[str]:
        parts: list[str] = []
        position = 0
        seen: set[str] = set()
        for placeholder in _PLACEHOLDER.finditer(self.blob_pattern):
            parts.append(re.escape(self.blob_pattern[position:placeholder.start()]))
            name = placeholder.group(1)
            # A repeated placeholder must match the same text again.
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
            seen.add(name)
            position = placeholder.end()
        parts.append(re.escape(self.blob_pattern[position:]))
        return re.compile("".join(parts), re.DOTALL)
