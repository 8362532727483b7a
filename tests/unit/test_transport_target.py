"""A request target with a space, a control character or a byte beyond ASCII is refused
before anything is sent (`transport.pool.request_head`), and any other target goes out as is."""

from __future__ import annotations

import pytest
import yarl

from ingest.transport.pool import UnsafeRequest, request_head


@pytest.mark.parametrize(
    "raw", ["/a b", "/a\x7f", "/a\x00", "/a\x01b", "/a?x=\x1f", "/é", "/a?\U0010ffff"]
)
def test_an_unsafe_target_is_refused(raw: str) -> None:
    url = yarl.URL("http://127.0.0.1:9" + raw, encoded=True)
    with pytest.raises(UnsafeRequest, match="spaces or control characters"):
        request_head("PUT", url, "", {})


def test_a_signed_target_goes_out_as_it_is() -> None:
    raw = "/b/k%C3%A9y.png?X-Amz-Signature=ab~cd&X-Amz-Date=20261201T000000Z"
    head = request_head("PUT", yarl.URL("http://127.0.0.1:9" + raw, encoded=True), "", {})
    assert head.startswith(f"PUT {raw} HTTP/1.1\r\n".encode())
