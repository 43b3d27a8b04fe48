"""Layer names: globs with `.` and `:` as separators (as the `cka` command's `--layers`), kinds, block indices."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, List, Sequence, Union

#: Pooled-feature suffixes of formats.md §1 (`blocks.3:cls`, `blocks.3:gap`, `blocks.3:gap_nocls`).
POOLINGS = ("cls", "gap", "gap_nocls")

Patterns = Union[str, Sequence[str], None]


def split_patterns(patterns: Patterns) -> List[str] | None:
    """`"a,b"` or `["a", "b"]` → `["a", "b"]`; None stays None (everything)."""
    if patterns is None:
        return None
    if isinstance(patterns, str):
        patterns = patterns.split(",")
    out = [p.strip() for p in patterns if p and p.strip()]
    if not out:
        raise ValueError("empty layer pattern list")
    return out


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> "re.Pattern[str]":
    # fnmatch(3) with FNM_PATHNAME after mapping '.' and ':' to '/': '*', '?' and [...] never cross a separator.
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^.:]*")
        elif c == "?":
            out.append("[^.:]")
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                neg = body[:1] in ("!", "^")
                if neg:
                    body = body[1:]
                body = body.replace("\\", "\\\\")
                out.append("(?![.:])[" + ("^" if neg else "") + body + "]")
                i = j
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def matches(pattern: str, name: str) -> bool:
    """True if layer `name` matches glob `pattern` (`blocks.*` is every block, never `blocks.3.norm1`)."""
    return _regex(pattern).match(name) is not None


def matches_any(patterns: Iterable[str] | None, name: str) -> bool:
    """True if `name` matches any of `patterns` (None matches everything)."""
    return patterns is None or any(matches(p, name) for p in patterns)


def infer_kind(name: str) -> str:
    """The `kind` attribute implied by a timm module path (`blocks.3.attn.qkv` → `qkv`), else `other`."""
    if ":" in name:
        return "pooled"
    last = name.split(".")[-1]
    table = {"patch_embed": "patch_embed", "norm1": "norm1", "qkv": "qkv", "ls1": "ls1", "norm2": "norm2",
             "fc1": "fc1", "act": "act", "fc2": "fc2", "ls2": "ls2", "norm": "norm", "fc_norm": "norm"}
    if last in table:
        return table[last]
    if last == "proj":
        return "attn_proj" if "attn" in name else "other"
    if last.isdigit() and name.startswith("blocks."):
        return "block"
    return "other"


def block_index(name: str) -> int:
    """The block index of a timm path (`blocks.7.mlp.fc1` → 7), else -1."""
    parts = re.split(r"[.:]", name)
    if len(parts) >= 2 and parts[0] == "blocks" and parts[1].isdigit():
        return int(parts[1])
    return -1
