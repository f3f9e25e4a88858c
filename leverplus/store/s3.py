"""A store on S3 or any S3-compatible server (MinIO, moto): s3://bucket/prefix.

Path-style addressing (MinIO and most self-hosted servers need it), botocore's standard retry mode with
exponential backoff, and errors translated into one-line StoreErrors that name the URI but never a credential.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from leverplus.errors import NotFoundError, StoreError
from leverplus.store.base import CHUNK, ObjectInfo, Store, TempObject, check_key, sha256_stream

__all__ = ["S3Options", "S3Store"]

_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}


class S3Options:
    """Connection options; credentials stay out of repr and logs."""

    def __init__(
        self,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_attempts: int = 10,
        connect_timeout_s: float = 5.0,
        multipart_threshold_mb: int = 64,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self.max_attempts = max_attempts
        self.connect_timeout_s = connect_timeout_s
        self.multipart_threshold = multipart_threshold_mb * 1024 * 1024

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            region_name=self.region,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"},
            connect_timeout=self.connect_timeout_s,
            read_timeout=60,
        )
        kwargs: dict[str, Any] = {"config": config}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self._access_key_id and self._secret_access_key:
            kwargs["aws_access_key_id"] = self._access_key_id
            kwargs["aws_secret_access_key"] = self._secret_access_key
        return boto3.session.Session().client("s3", **kwargs)

    def __repr__(self) -> str:
        return f"S3Options(endpoint_url={self.endpoint_url!r}, region={self.region!r})"


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str, options: S3Options) -> None:
        if len(bucket) < 3:
            raise StoreError(f"invalid S3 bucket name {bucket!r}: needs at least 3 characters")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.options = options
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.options.client()
        return self._client

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn: Any, **kwargs: Any) -> Any:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            raise self._translate(what, key, exc) from exc

    def _translate(self, what: str, key: str, exc: Exception) -> StoreError:
        """One-line error naming the URI and the cause, never a credential."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        uri = f"{self.uri.rstrip('/')}/{key}" if key else self.uri  # a prefix ("rounds/") is not an object key
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotFoundError(f"{uri} does not exist")
            if code == "NoSuchBucket":
                return StoreError(f"{what} {uri}: bucket {self.bucket!r} does not exist")
            if code in _CREDENTIAL_CODES or code == "403":
                return StoreError(f"{what} {uri}: credentials rejected ({code})")
            return StoreError(f"{what} {uri}: {code or 'error'}")
        if isinstance(exc, NoCredentialsError):
            return StoreError(
                f"{what} {uri}: no S3 credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            )
        if isinstance(exc, EndpointConnectionError):
            endpoint = self.client.meta.endpoint_url  # as resolved: from settings, AWS_ENDPOINT_URL or AWS's own
            return StoreError(
                f"{what} {uri}: cannot reach S3 endpoint {endpoint} after {self.options.max_attempts} attempts"
            )
        if "NoSuchBucket" in str(exc):  # the transfer manager wraps the ClientError in S3UploadFailedError
            return StoreError(f"{what} {uri}: bucket {self.bucket!r} does not exist")
        return StoreError(f"{what} {uri}: {type(exc).__name__}: {exc}")

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        digest, size = sha256_stream([data])
        self._call("writing", key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)
        return ObjectInfo(key=key, size=size, sha256=digest)

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        from boto3.s3.transfer import TransferConfig

        with open(path, "rb") as src:
            digest, size = sha256_stream(iter(lambda: src.read(CHUNK), b""))
        transfer = TransferConfig(
            multipart_threshold=self.options.multipart_threshold,
            multipart_chunksize=max(self.options.multipart_threshold // 4, 5 * 1024 * 1024),
        )
        # A multipart upload becomes visible only when completed, so readers never see a partial object.
        self._call(
            "uploading",
            key,
            self.client.upload_file,
            Filename=str(path),
            Bucket=self.bucket,
            Key=self._key(key),
            Config=transfer,
        )
        return ObjectInfo(key=key, size=size, sha256=digest)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            raise self._translate("writing", key, exc) from exc
        except BotoCoreError as exc:  # a dead endpoint while taking a lease
            raise self._translate("writing", key, exc) from exc

    def open(self, key: str) -> BinaryIO:
        response = self._call("reading", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        return response["Body"]

    def exists(self, key: str) -> bool:
        try:
            self._call("checking", key, self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        except NotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        if self.prefix and not prefix:
            full = self.prefix + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call("listing", prefix, lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full)))
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(obj["Key"][strip:] for page in pages for obj in page.get("Contents", []))

    def delete(self, key: str) -> None:
        self._call("deleting", key, self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def temp_objects(self) -> list[TempObject]:
        """Multipart uploads that were started and never completed (a killed upload of a large file)."""
        from datetime import UTC, datetime

        prefix = self.prefix + "/" if self.prefix else ""
        paginator = self.client.get_paginator("list_multipart_uploads")
        pages = self._call("listing uploads", "", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=prefix)))
        now = datetime.now(UTC)
        return [
            TempObject(u["Key"][len(prefix) :], u["UploadId"], (now - u["Initiated"]).total_seconds(), 0)
            for page in pages
            for u in page.get("Uploads", [])
        ]

    def remove_temp(self, temp: TempObject) -> None:
        self._call(
            "aborting upload of",
            temp.key,
            self.client.abort_multipart_upload,
            Bucket=self.bucket,
            Key=self._key(temp.key),
            UploadId=temp.ident,
        )
