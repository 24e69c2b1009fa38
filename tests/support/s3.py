"""A real S3-compatible HTTP server for the storage tests: moto's server on 127.0.0.1 at a
free port, in a thread of the test process (no MinIO binary is installable from PyPI or
Debian here). Each test works under a prefix of its own in one shared bucket."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from pydantic import SecretStr

from app.core.storage_s3 import MIN_PART_SIZE, S3Storage, make_client

BUCKET = "advocase-test-storage"
# moto accepts any credentials; these are plainly not real ones.
ACCESS_KEY_ID = "fictional-test-key-id"
SECRET_ACCESS_KEY = "fictional-test-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    client: Any

    def storage(self, prefix: str | None = None, *, part_size: int = MIN_PART_SIZE,
                own_client: bool = False) -> S3Storage:
        """A storage under a fresh prefix (parts of 5 MiB, S3's smallest, so that a
        multipart object stays small), sharing this server's client unless ``own_client``
        (for a test that hooks into the client's requests)."""
        client = None if own_client else self.client
        return S3Storage(self.bucket, prefix or f"t-{uuid4().hex[:12]}", part_size=part_size,
                         client=client, **self.client_options())

    def client_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "region": REGION,
                "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_ACCESS_KEY}

    def settings_changes(self, prefix: str) -> dict[str, Any]:
        """What ``Settings.model_copy(update=...)`` needs to store in this server."""
        return {"storage_url": f"s3://{self.bucket}/{prefix}",
                "s3_endpoint_url": self.endpoint_url, "s3_region": REGION,
                "s3_access_key_id": ACCESS_KEY_ID,
                "s3_secret_access_key": SecretStr(SECRET_ACCESS_KEY)}

    def keys(self, prefix: str) -> list[str]:
        """Every published object under ``prefix``, in full."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def pending_uploads(self, prefix: str) -> list[str]:
        """Keys of the multipart uploads under ``prefix`` neither completed nor aborted."""
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return sorted(u["Key"] for page in pages for u in page.get("Uploads", []))


def running_s3_server() -> Iterator[S3Server]:
    """Start the server and its bucket; stop it when the generator is closed."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = make_client(endpoint_url=endpoint, region=REGION,
                             access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY)
        client.create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint, BUCKET, client)
    finally:
        server.stop()
