"""A small, seeded generator of malformed webhook bodies: the same seed gives the same bodies.

Each body starts from a valid one and is broken in one to three ways: a value of another type
anywhere (arrays for objects, a list for `topic`, ...), a key removed, a node wrapped in an
array, nesting of any depth, JSON tokens Python reads but JSON does not (NaN, 1e400, 5,000-digit
integers, lone surrogates), corrupted bytes (truncation, invalid UTF-8, a BOM, UTF-16), or a
whole body that is not an object at all. Form-encoded bodies get broken names and escapes."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import quote

SCALARS: list[Any] = [
    None, True, False, 0, -1, 1, 42, 2**31, 2**64, -(2**64), 10**300, 0.5, -0.0, 1e308, 1e-308,
    "", " ", "x", "42", "é", "😀", "\u0000", "\u001f", "\ufffe", "\uffff", "a" * 300, "a" * 3000,
    "sha1=", "contact.lead.updated", "contact.deleted", "ping", "vne310wv", "notif_1", "null", "[]",
    "lead", "referrer", "person_invited", "a@b.co", "A@B.CO ", "../../x", "a/b", "a#b", "%00",
]
# Tokens that some parsers take and JSON does not (or that stretch what a parser takes).
RAW_TOKENS = [
    b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" + b"0" * 5000, b"1" + b"0" * 400,
    b'"\\ud800"', b'"\\udc00x"', b'"\\ud83d\\ude00"', b"01", b"1.", b".5", b"+1", b"0x10", b'"\x01"',
    b"'single'", b"undefined", b"True", b"None", b'"\\u0000"', b'"\xff"', b'"\xc3"', b'"\xed\xa0\x80"',
    b"[1,]", b'{"a":1,}', b'{"a" 1}', b"-0", b"1E+2", b"123456789012345678901234567890",
]
WHOLE_BODIES = [
    b"", b" ", b"null", b"true", b"0", b"-1", b"1e400", b"NaN", b'"text"', b"[]", b"[{}]", b"{}",
    b"{", b"}", b"{}{}", b"{} x", b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b"\x00", b"\x80\x81",
    b"{" * 100_000, b"[" * 300 + b"]" * 300, b"[" * 199 + b"]" * 199, b"[" * 200 + b"]" * 200,
    b"a=1&b=2", b"<xml/>", b'{"__proto__":{}}',
]
DEPTHS = [10, 50, 150, 198, 199, 200, 201, 202, 500, 1_000, 5_000, 50_000]
CONTENT_TYPES = [
    "text/plain", "application/json; charset=utf-8", "application/vnd.api+json", "APPLICATION/JSON",
    "multipart/form-data; boundary=x", "application/xml", "", "garbage", "*/*", "application/json, text/xml",
    "application/x-www-form-urlencoded", "application/octet-stream", "text/html; charset=latin-1",
    "application/json; charset=utf-16", "application/json; charset=base64", "application/json; charset=nope",
    "text/plain; charset=ISO-8859-1", "application/x-www-form-urlencoded; charset=windows-1252",
]
_HOLE = "\u0000HOLE\u0000"


@dataclass(frozen=True)
class Body:
    raw: bytes
    content_type: str | None     # None: no Content-Type header
    how: str                     # what was done to it, for the failure message


class Malformed:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    # --- values ---------------------------------------------------------------------------
    def value(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if depth > 2 or r < 0.55:
            return self.rng.choice(SCALARS)
        if r < 0.8:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        return {self.rng.choice(["id", "type", "x", "", "email", "item", "0"]): self.value(depth + 1)
                for _ in range(self.rng.randint(0, 3))}

    def nested(self) -> bytes:
        depth = self.rng.choice(DEPTHS)
        if self.rng.random() < 0.5:
            return b"[" * depth + b"1" + b"]" * depth
        return b'{"a":' * depth + b"{}" + b"}" * depth

    # --- paths in a document ----------------------------------------------------------------
    def _paths(self, doc: Any, prefix: tuple = ()) -> list[tuple]:
        out = [prefix]
        if isinstance(doc, dict):
            for k, v in doc.items():
                out += self._paths(v, prefix + (k,))
        elif isinstance(doc, list):
            for i, v in enumerate(doc):
                out += self._paths(v, prefix + (i,))
        return out

    def _set(self, doc: Any, path: tuple, value: Any) -> Any:
        if not path:
            return value
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = value
        return doc

    def _get(self, doc: Any, path: tuple) -> Any:
        for part in path:
            doc = doc[part]
        return doc

    # --- one broken document ------------------------------------------------------------------
    def mutate(self, doc: Any, focus: list[tuple]) -> tuple[Any, list[bytes], list[str]]:
        """Break `doc` once. Returns (doc, raw fillers for its holes, what was done)."""
        doc = json.loads(json.dumps(doc))
        fillers: list[bytes] = []
        paths = [p for p in focus if self._has(doc, p)] if self.rng.random() < 0.5 else []
        path = self.rng.choice(paths or self._paths(doc))
        how = self.rng.choice(["type", "type", "delete", "wrap", "deep", "token", "object"])
        if how == "delete" and path:
            parent = self._get(doc, path[:-1])
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, list) and parent:
                parent.pop(path[-1])
        elif how == "wrap":
            doc = self._set(doc, path, [self._get(doc, path)])
        elif how == "object":
            doc = self._set(doc, path, {"id": self._get(doc, path)})
        elif how in ("deep", "token"):
            fillers.append(self.nested() if how == "deep" else self.rng.choice(RAW_TOKENS))
            doc = self._set(doc, path, _HOLE)
        else:
            doc = self._set(doc, path, self.value())
        return doc, fillers, [f"{how} at {'.'.join(map(str, path)) or '(root)'}"]

    @staticmethod
    def _has(doc: Any, path: tuple) -> bool:
        try:
            for part in path:
                doc = doc[part]
            return True
        except (KeyError, IndexError, TypeError):
            return False

    def _encode(self, doc: Any, fillers: list[bytes]) -> bytes:
        raw = json.dumps(doc, ensure_ascii=self.rng.random() < 0.5).encode("utf-8", "surrogatepass")
        hole = json.dumps(_HOLE).encode()
        for filler in fillers:
            raw = raw.replace(hole, filler, 1)
        return raw.replace(hole, b"0")

    def corrupt(self, raw: bytes) -> tuple[bytes, str]:
        how = self.rng.choice(["truncate", "byte", "drop", "bom", "utf16", "latin1", "double"])
        at = self.rng.randrange(max(1, len(raw)))
        if how == "truncate":
            return raw[:at], how
        if how == "byte":
            return raw[:at] + bytes([self.rng.randrange(0x80, 0x100)]) + raw[at:], how
        if how == "drop":
            return raw[:at] + raw[at + 1:], how
        if how == "bom":
            return b"\xef\xbb\xbf" + raw, how
        if how == "utf16":
            return raw.decode("utf-8", "replace").encode("utf-16"), how
        if how == "latin1":
            return raw.replace(b"e", b"\xe9"), how
        return raw + raw, how

    def json_bodies(self, bases: list[Any], focus: list[tuple], count: int) -> Iterator[Body]:
        for _ in range(count):
            r = self.rng.random()
            if r < 0.08:
                yield Body(self.rng.choice(WHOLE_BODIES), self._content_type(), "whole body")
                continue
            doc, fillers, how = self.rng.choice(bases), [], []
            for _ in range(self.rng.choice([1, 1, 1, 2, 3])):
                doc, more, what = self.mutate(doc, focus)
                fillers += more
                how += what
            raw = self._encode(doc, fillers)
            if r > 0.85:
                raw, what = self.corrupt(raw)
                how.append(what)
            yield Body(raw, self._content_type(), "; ".join(how))

    def _content_type(self) -> str | None:
        r = self.rng.random()
        if r < 0.8:
            return "application/json"
        if r < 0.85:
            return None
        return self.rng.choice(CONTENT_TYPES)

    # --- forms (RF) ---------------------------------------------------------------------------
    def form_bodies(self, base: dict, count: int) -> Iterator[Body]:
        names = ["id", "campaign_id", "email", "user[id]", "user[email]", "meta[0][field]", "meta[0][value]",
                 "meta[company]", "tags[]", "a[b][c][d][e][f][g]", "a[", "a]", "[a]", "a[]b", "", "a[b]",
                 "referrer_id", "type", "id[]", "campaign_id[x]"]
        for _ in range(count):
            pairs = [(k, "" if v is None else str(v)) for k, v in base.items()]
            for _ in range(self.rng.randint(1, 4)):
                r = self.rng.random()
                if r < 0.4:
                    pairs.append((self.rng.choice(names), str(self.rng.choice(SCALARS))))
                elif r < 0.55 and pairs:
                    pairs.pop(self.rng.randrange(len(pairs)))
                elif r < 0.7:
                    pairs.append(("a" + "[x]" * self.rng.choice([5, 6, 50, 5_000]), "1"))
                elif r < 0.8:
                    pairs += [(f"f{i}", "1") for i in range(self.rng.choice([999, 1000, 1001, 3000]))]
                else:
                    pairs.append((self.rng.choice(names), self.rng.choice(["%zz", "%ff%fe", "%c3", "%ed%a0%80",
                                                                           "+%2B%26=", "%00"])))
            text = "&".join(f"{quote(k, safe='[]%')}={quote(v, safe='%+&=')}" for k, v in pairs)
            raw = text.encode("utf-8", "surrogatepass")
            if self.rng.random() < 0.15:
                raw, _ = self.corrupt(raw)
            yield Body(raw, "application/x-www-form-urlencoded", "form")
