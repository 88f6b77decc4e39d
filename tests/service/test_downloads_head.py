"""``HEAD`` of the two helper downloads (``curl -I``, a CI cache checking its copy): the ``GET``'s status and
headers, no body; ``If-None-Match`` with the current ETag is a 304 here too. Neither is a second operation in the
OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from support import serve_downloads


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_downloads() as served:
        yield served


@pytest.mark.parametrize("path", ["/helper/ccweb-helper.sh", "/helper/ccweb-helper"], ids=["sh", "zipapp"])
def test_head_is_the_get_without_its_body(url: str, path: str) -> None:
    got = httpx.get(url + path, timeout=60)
    head = httpx.head(url + path, timeout=60)
    assert (got.status_code, head.status_code) == (200, 200)
    assert head.content == b""
    same = ("etag", "content-length", "content-type", "cache-control")
    assert {k: head.headers.get(k) for k in same} == {k: got.headers.get(k) for k in same}
    assert int(head.headers["content-length"]) == len(got.content) > 0
    unchanged = httpx.head(url + path, headers={"If-None-Match": got.headers["etag"]}, timeout=60)
    assert (unchanged.status_code, unchanged.headers["etag"]) == (304, got.headers["etag"])


def test_the_openapi_document_lists_get_only(url: str) -> None:
    paths = httpx.get(f"{url}/openapi.json", timeout=60).json()["paths"]
    assert list(paths["/helper/ccweb-helper.sh"]) == list(paths["/helper/ccweb-helper"]) == ["get"]
