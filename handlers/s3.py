"""``s3``: mirrors each output into a bucket of S3 or any S3-compatible store (MinIO, R2...).

Each output is streamed from its URL (through the shared ``Fetcher``: http(s) only, private
addresses and redirects to them refused, the download cap enforced) straight into the
bucket: files smaller than ``part_size`` with one ``PutObject``, larger ones as a multipart
upload, so at most one part is ever held in memory. A failed multipart upload is aborted.

Keys come from the ``key`` template, so a retried step overwrites its objects instead of
adding new ones. Every object gets ``ContentType`` from the download and its SHA-256 (computed
while streaming) as the user metadata ``sha256``; for a multipart upload the hash is only
known at the end, so the object is then copied onto itself (server-side) with the metadata.

Result: ``urls`` (``s3://bucket/key``), ``keys``, ``sizes``, ``sha256``, ``content_types``
and ``presigned_urls``: with ``presign``, a GET URL per object valid for that long (at most
7 days, and no longer than temporary credentials live); without it, an empty list.

boto3 is synchronous: every call runs in a worker thread. The client is created on first
use, once per handler instance, with explicit credentials when both ``access_key_id`` and
``secret_access_key`` are set, else boto3's usual chain (environment, profile, role).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

import aiohttp
import boto3
import msgspec
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from msgspec import Meta

from handlers import Handler, HandlerFailed, StepContext
from service import http as outgoing
from service.config import Duration, seconds

MIB = 1024 * 1024
MIN_PART = 5 * MIB  # S3's smallest part (all but the last)
MAX_PART = 5 * 1024 * MIB  # and its largest
MAX_PARTS = 10_000
MAX_PRESIGN_SECONDS = 7 * 86400  # SigV4 presigned URLs live at most a week
COPY_LIMIT = 5 * 1024 * MIB  # the largest object one CopyObject can copy
COPY_PART = 1024 * MIB  # range size when a bigger object is copied in parts
_CHUNK = MIB
log = logging.getLogger("taskhook")

# Codes after which trying again can succeed (besides every 5xx, 408, 409, 425 and 429).
_RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "NoSuchUpload",
        "ExpiredToken",
    }
)

# What the codes that retrying cannot fix mean, in the operator's terms.
_EXPLAINED = {
    "NoSuchBucket": "bucket {bucket!r} does not exist",
    "AccessDenied": (
        "access denied to s3://{bucket}/{key}: the credentials lack permission "
        "(s3:PutObject and s3:GetObject are needed)"
    ),
    "AllAccessDisabled": "all access to bucket {bucket!r} is disabled",
    "AccountProblem": "the account owning bucket {bucket!r} has a problem",
    "InvalidAccessKeyId": (
        "the store does not know the access key: check access_key_id (or the AWS credentials "
        "boto3 found)"
    ),
    "SignatureDoesNotMatch": (
        "the request signature was refused: check secret_access_key (or the AWS credentials "
        "boto3 found)"
    ),
    "InvalidBucketName": "{bucket!r} is not a valid bucket name",
    "PermanentRedirect": "bucket {bucket!r} is in another region or endpoint: set region",
    "AuthorizationHeaderMalformed": "bucket {bucket!r} is in another region: set region",
    "IllegalLocationConstraintException": ("bucket {bucket!r} is in another region: set region"),
    "KeyTooLongError": "the key {key!r} is too long",
    "EntityTooLarge": "the object is larger than the store accepts",
}


class S3Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    bucket: Annotated[str, Meta(min_length=1, max_length=255)]
    key: str = "{{ job.model }}/{{ job.id }}/{{ output.filename }}"
    endpoint_url: Annotated[str, Meta(pattern=r"^https?://[^/\s]+")] | None = None
    region: Annotated[str, Meta(min_length=1)] | None = None
    access_key_id: Annotated[str, Meta(min_length=1)] | None = None
    secret_access_key: Annotated[str, Meta(min_length=1)] | None = None
    presign: Duration | None = None
    part_size: Annotated[int, Meta(ge=MIN_PART, le=MAX_PART)] = 8 * MIB


@dataclass
class _Stored:
    key: str
    size: int
    sha256: str
    content_type: str


@dataclass
class _Multipart:
    """One multipart upload in progress: its id and the parts sent so far."""

    handler: S3Handler
    key: str
    upload_id: str
    parts: list[dict[str, Any]] = field(default_factory=list)

    def _where(self, number: int) -> dict[str, Any]:
        if number > MAX_PARTS:
            raise HandlerFailed(
                f"s3://{self.handler.config.bucket}/{self.key} needs more than {MAX_PARTS} "
                "parts: raise part_size",
                retryable=False,
            )
        return {
            "Bucket": self.handler.config.bucket,
            "Key": self.key,
            "UploadId": self.upload_id,
            "PartNumber": number,
        }

    async def add(self, body: bytes | bytearray) -> None:
        number = len(self.parts) + 1
        answer = await self.handler.call("upload_part", Body=body, **self._where(number))
        self.parts.append({"ETag": answer["ETag"], "PartNumber": number})

    async def add_copy(self, first: int, last: int) -> None:
        number = len(self.parts) + 1
        source = {"Bucket": self.handler.config.bucket, "Key": self.key}
        answer = await self.handler.call(
            "upload_part_copy",
            CopySource=source,
            CopySourceRange=f"bytes={first}-{last}",
            **self._where(number),
        )
        self.parts.append({"ETag": answer["CopyPartResult"]["ETag"], "PartNumber": number})

    async def complete(self) -> None:
        await self.handler.call(
            "complete_multipart_upload",
            Bucket=self.handler.config.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    async def abort(self) -> None:
        """Best effort: the step's own failure is what gets reported."""
        try:
            await self.handler.call(
                "abort_multipart_upload",
                Bucket=self.handler.config.bucket,
                Key=self.key,
                UploadId=self.upload_id,
            )
        except Exception as exc:  # an orphaned upload costs storage until a lifecycle rule
            log.warning("could not abort the multipart upload of %s: %s", self.key, exc)


class _Writer:
    """Sends one stream to one key: each part as soon as it is full, the rest at the end.

    Holds at most one part; a stream shorter than a part becomes a single ``PutObject``.
    """

    def __init__(self, handler: S3Handler, key: str, content_type: str, part_size: int) -> None:
        self.handler = handler
        self.key = key
        self.content_type = content_type
        self.part_size = part_size
        self.buffer = bytearray()
        self.upload: _Multipart | None = None

    async def write(self, chunk: bytes) -> None:
        while chunk:
            room = self.part_size - len(self.buffer)
            self.buffer += chunk[:room]
            chunk = chunk[room:]
            if len(self.buffer) == self.part_size:
                await self._send_part()

    async def _send_part(self) -> None:
        if self.upload is None:
            self.upload = await self.handler.start_upload(self.key, self.content_type)
        part, self.buffer = self.buffer, bytearray()
        await self.upload.add(part)

    async def finish(self, stored: _Stored) -> None:
        if self.upload is None:
            await self.handler.put(stored, self.buffer)
            return
        if self.buffer:
            await self._send_part()
        upload, self.upload = self.upload, None
        await upload.complete()
        await self.handler.set_metadata(stored)

    async def abort(self) -> None:
        if self.upload is not None:
            await self.upload.abort()


class S3Handler(Handler):
    type_name = "s3"
    Config = S3Config
    templates = ("key",)
    result_sample = {
        "urls": ["s3://bucket/sample"],
        "keys": ["sample"],
        "sizes": [1],
        "sha256": ["0" * 64],
        "content_types": ["image/png"],
        "presigned_urls": ["https://bucket.s3.amazonaws.com/sample?X-Amz-Signature=0"],
    }

    def __init__(self, config: msgspec.Struct) -> None:
        super().__init__(config)
        self._client: Any = None
        self._client_lock = threading.Lock()

    @classmethod
    def check(
        cls, config: S3Config, rendered: dict[str, Any], allow_unknown_models: bool
    ) -> list[str]:
        """What msgspec cannot say about single fields, reported when the config loads."""
        problems = []
        if (config.access_key_id is None) != (config.secret_access_key is None):
            problems.append(
                "access_key_id: access_key_id and secret_access_key must be set together "
                "(or neither, for boto3's credential chain)"
            )
        if config.presign is not None and not 1 <= seconds(config.presign) <= MAX_PRESIGN_SECONDS:
            problems.append(
                f"presign: must be between 1s and 7d (the longest a presigned URL lives), "
                f"not {config.presign!r}"
            )
        if not str(rendered.get("key", "")).lstrip("/"):
            problems.append("key: renders an empty key")
        return problems

    async def run(self, step: StepContext) -> dict[str, Any]:
        expires = self._presign_seconds()
        result: dict[str, list[Any]] = {name: [] for name in self.result_sample}
        for output in step.context["outputs"]:
            stored = await self._mirror(step, output)
            result["urls"].append(f"s3://{self.config.bucket}/{stored.key}")
            result["keys"].append(stored.key)
            result["sizes"].append(stored.size)
            result["sha256"].append(stored.sha256)
            result["content_types"].append(stored.content_type)
            if expires:
                params = {"Bucket": self.config.bucket, "Key": stored.key}
                url = await self.call(
                    "generate_presigned_url", "get_object", Params=params, ExpiresIn=expires
                )
                result["presigned_urls"].append(url)
        return result

    # ---- the client ---------------------------------------------------------------------

    def _presign_seconds(self) -> int | None:
        if self.config.presign is None:
            return None
        expires = int(seconds(self.config.presign))
        if not 1 <= expires <= MAX_PRESIGN_SECONDS:
            raise HandlerFailed(
                f"presign must be between 1s and 7d, not {self.config.presign!r}",
                retryable=False,
            )
        return expires

    def _make_client(self) -> Any:
        """The one client of this handler (boto3 clients are thread-safe); built once."""
        with self._client_lock:
            if self._client is not None:
                return self._client
            config = self.config
            if (config.access_key_id is None) != (config.secret_access_key is None):
                raise HandlerFailed(
                    "access_key_id and secret_access_key must be set together",
                    retryable=False,
                )
            options: dict[str, Any] = {
                "connect_timeout": 10,
                "read_timeout": 120,
                "retries": {"mode": "standard", "total_max_attempts": 3},
                "max_pool_connections": 16,
                "signature_version": "s3v4",  # presigned URLs too (SigV2 is long deprecated)
            }
            if config.endpoint_url:
                # S3-compatible stores: path-style addressing, and no checksum headers they
                # may not understand (boto3 >= 1.36 adds CRC32 headers by default).
                options["s3"] = {"addressing_style": "path"}
                options["request_checksum_calculation"] = "when_required"
                options["response_checksum_validation"] = "when_required"
            session = boto3.session.Session(
                aws_access_key_id=config.access_key_id,
                aws_secret_access_key=config.secret_access_key,
                region_name=config.region,
            )
            self._client = session.client(
                "s3", endpoint_url=config.endpoint_url, config=BotoConfig(**options)
            )
            return self._client

    async def call(self, method: str, *args: Any, **params: Any) -> Any:
        """Runs one boto3 client method in a worker thread; its errors become HandlerFailed."""

        def work() -> Any:
            return getattr(self._make_client(), method)(*args, **params)

        try:
            return await asyncio.to_thread(work)
        except (ClientError, BotoCoreError) as exc:
            raise self._failure(exc, method, params.get("Key")) from exc

    # ---- one output ---------------------------------------------------------------------

    async def _mirror(self, step: StepContext, output: dict[str, Any]) -> _Stored:
        key = str(step.render("key", output=output)).lstrip("/")
        if not key:
            raise HandlerFailed("the key template rendered an empty key", retryable=False)
        if len(key.encode()) > 1024:
            raise HandlerFailed(f"the key {key[:80]!r}... is over 1024 bytes", retryable=False)
        url = output["url"]
        fetcher = step.services.fetcher
        try:
            async with fetcher.open(url) as response:
                return await self._store(response, url, key, fetcher.max_bytes)
        except outgoing.FAILURES as exc:
            raise HandlerFailed(f"download of {url!r} failed: {outgoing.describe(exc)}") from exc

    async def _store(
        self, response: aiohttp.ClientResponse, url: str, key: str, cap: int
    ) -> _Stored:
        declared = _content_length(response)
        if declared is not None and declared > cap:
            raise _too_large(url, cap)
        part_size = self.config.part_size
        if declared is not None:  # a known size that would need more parts gets bigger ones
            part_size = min(MAX_PART, max(part_size, -(-declared // MAX_PARTS)))
        content_type = response.headers.get("content-type") or "application/octet-stream"
        writer = _Writer(self, key, content_type, part_size)
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in response.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > cap:
                    raise _too_large(url, cap)
                digest.update(chunk)
                await writer.write(chunk)
            stored = _Stored(key, size, digest.hexdigest(), content_type)
            await writer.finish(stored)
            return stored
        except BaseException:
            await writer.abort()
            raise

    async def start_upload(
        self, key: str, content_type: str, metadata: dict[str, str] | None = None
    ) -> _Multipart:
        answer = await self.call(
            "create_multipart_upload",
            Bucket=self.config.bucket,
            Key=key,
            ContentType=content_type,
            Metadata=metadata or {},
        )
        return _Multipart(self, key, answer["UploadId"])

    async def put(self, stored: _Stored, body: bytearray) -> None:
        await self.call(
            "put_object",
            Bucket=self.config.bucket,
            Key=stored.key,
            Body=body,
            ContentType=stored.content_type,
            Metadata={"sha256": stored.sha256},
        )

    async def set_metadata(self, stored: _Stored) -> None:
        """Copies a multipart object onto itself with its SHA-256, server-side."""
        metadata = {"sha256": stored.sha256}
        source = {"Bucket": self.config.bucket, "Key": stored.key}
        if stored.size <= COPY_LIMIT:
            await self.call(
                "copy_object",
                Bucket=self.config.bucket,
                Key=stored.key,
                CopySource=source,
                MetadataDirective="REPLACE",
                ContentType=stored.content_type,
                Metadata=metadata,
            )
            return
        upload = await self.start_upload(stored.key, stored.content_type, metadata)
        try:
            for first in range(0, stored.size, COPY_PART):
                await upload.add_copy(first, min(stored.size, first + COPY_PART) - 1)
            await upload.complete()
        except BaseException:
            await upload.abort()
            raise

    # ---- errors -------------------------------------------------------------------------

    def _failure(self, exc: Exception, operation: str, key: str | None) -> HandlerFailed:
        if isinstance(exc, ClientError):
            message, retryable = self._client_error(exc, key)
        else:
            message, retryable = _transport_error(exc)
        message = f"S3 {operation} failed: {message}"
        for secret in (self.config.access_key_id, self.config.secret_access_key):
            if secret:
                message = message.replace(secret, "***")
        return HandlerFailed(message, retryable=retryable)

    def _client_error(self, exc: ClientError, key: str | None) -> tuple[str, bool]:
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "Unknown")
        status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        template = _EXPLAINED.get(code)
        if template:
            detail = template.format(bucket=self.config.bucket, key=key)
        else:
            detail = str(error.get("Message") or "no message")[:300]
        retryable = code in _RETRYABLE_CODES or status >= 500 or status in (408, 409, 425, 429)
        return f"{code} (HTTP {status}): {detail}", retryable


def _transport_error(exc: Exception) -> tuple[str, bool]:
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            "no usable AWS credentials: set access_key_id and secret_access_key, or "
            "configure boto3's credential chain (environment, profile, role)",
            False,
        )
    if isinstance(exc, CredentialRetrievalError):
        return f"could not retrieve AWS credentials: {exc}", True
    if isinstance(exc, ParamValidationError):
        return f"invalid request: {exc}", False
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError):
        return f"the store could not be reached: {exc}", True
    return f"{type(exc).__name__}: {exc}", True


def _content_length(response: aiohttp.ClientResponse) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _too_large(url: str, cap: int) -> HandlerFailed:
    return HandlerFailed(
        f"{url!r} is larger than the download cap of {cap} bytes (security.max_download_bytes)",
        retryable=False,
    )
