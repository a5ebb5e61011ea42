"""A drop prefix in an S3-compatible bucket (boto3): AWS, MinIO or any store that speaks the
protocol. Credentials and endpoint come from boto3's own chain (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY or a role, AWS_REGION, AWS_ENDPOINT_URL_S3 for a store other than AWS).

An object is whole once listed (S3 writes are atomic), and its ETag names its version: a file is
read with `If-Match` its ETag, so the bytes hashed are the version that was looked at. Keys below
a further `/` are subfolders and are left alone, as a local folder's subfolders are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
import os
from functools import cache

import boto3
import botocore.exceptions
from botocore.config import Config

from bspk_pipelines.ingest.stores import Changed, Listing, Reading, Refused, S3Address, Snapshot, is_candidate
from bspk_pipelines.settings import LANDING_URL

NOT_FOUND = ("404", "NoSuchKey", "NotFound")


def client():
    """One S3 client per process and endpoint (boto3 clients are thread-safe), from boto3's chain."""
    return _client(os.environ.get("AWS_ENDPOINT_URL_S3"))


@cache
def _client(endpoint: str | None):
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=Config(
        retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60))


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def refusal(error: Exception, named_by: str = "the source's `drop`",
            grants: str = "s3:ListBucket and s3:GetObject") -> Refused:
    """An S3 error as a refusal that says what to change (tried again at the next look): the
    setting that names the bucket (`named_by`), the permissions the credentials need (`grants`).
    The caller names the store or the entry."""
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return Refused("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or give the pod a role)",
                       retried=True)
    if isinstance(error, botocore.exceptions.ClientError):
        code = _code(error)
        if code == "NoSuchBucket":
            return Refused(f"the bucket does not exist: create it or correct {named_by}", retried=True)
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return Refused(f"access denied ({code}): give the credentials {grants} on the prefix", retried=True)
        return Refused(f"S3 answered {code or error}; tried again at the next look", retried=True)
    return Refused(f"cannot reach S3 ({error}); tried again at the next look", retried=True)


def landing_refusal(address: S3Address, error: Exception) -> Refused:
    """An S3 error of the landing zone, named as BSPK_LANDING_URL names it (never as a source's drop)."""
    why = refusal(error, named_by=LANDING_URL, grants="s3:ListBucket, s3:PutObject and s3:GetObject")
    return Refused(f"the landing zone s3://{address.bucket}/{address.prefix} ({LANDING_URL}): {why}", retried=True)


def _snapshot(size: int, modified, etag: str) -> Snapshot:
    return Snapshot(int(size), int(modified.timestamp()) * 1_000_000_000, etag.strip('"'))


class S3Prefix:
    """The objects directly under a prefix of a bucket."""

    parallel_reads = True

    def __init__(self, address: S3Address):
        self.address = address
        self.where = f"s3://{address.bucket}/{address.prefix}"

    def entries(self) -> Listing:
        listing: Listing = {}
        pages = client().get_paginator("list_objects_v2").paginate(
            Bucket=self.address.bucket, Prefix=self.address.prefix, Delimiter="/")
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(self.address.prefix):]
                    if not name:
                        continue  # the prefix's own folder marker
                    listing[name] = _snapshot(obj["Size"], obj["LastModified"], obj["ETag"]) if is_candidate(name) else None
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise refusal(e) from None
        return listing

    def _head(self, name: str) -> Snapshot:
        try:
            head = client().head_object(Bucket=self.address.bucket, Key=self.address.prefix + name)
        except botocore.exceptions.ClientError as e:
            if _code(e) in NOT_FOUND:
                raise FileNotFoundError(name) from None
            raise refusal(e) from None
        except botocore.exceptions.BotoCoreError as e:
            raise refusal(e) from None
        return _snapshot(head["ContentLength"], head["LastModified"], head["ETag"])

    @contextmanager
    def reading(self, name: str) -> Iterator[Reading]:
        opened = self._head(name)
        try:
            body = client().get_object(Bucket=self.address.bucket, Key=self.address.prefix + name,
                                       IfMatch=f'"{opened.etag}"')["Body"]
        except botocore.exceptions.ClientError as e:
            if _code(e) in NOT_FOUND:
                raise FileNotFoundError(name) from None
            if _code(e) in ("PreconditionFailed", "412"):
                raise Changed(f"{name} was replaced while it was opened") from None
            raise refusal(e) from None
        except botocore.exceptions.BotoCoreError as e:
            raise refusal(e) from None
        try:
            yield Reading(body, opened, lambda: self._head(name))
        finally:
            body.close()

    def stat(self, name: str) -> Snapshot | None:
        try:
            return self._head(name)
        except (FileNotFoundError, Refused):
            return None

    def close(self) -> None:
        pass


def check_landing(address: S3Address) -> None:
    """The landing zone's bucket listed once (`landing_refusal` if it cannot be)."""
    try:
        client().list_objects_v2(Bucket=address.bucket, Prefix=address.prefix, MaxKeys=1)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        raise landing_refusal(address, e) from None


def keep(address: S3Address, key: str, path, sha256: str) -> None:
    """Put a landed file into the landing zone's bucket under `prefix/key`, its sha256 in the
    object's metadata (multipart for a large file: memory stays flat)."""
    try:
        client().upload_file(str(path), address.bucket, address.prefix + key,
                             ExtraArgs={"Metadata": {"sha256": sha256}})
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
            boto3.exceptions.S3UploadFailedError) as e:
        raise landing_refusal(address, e.__context__ if isinstance(e, boto3.exceptions.S3UploadFailedError)
                              and e.__context__ else e) from None


def fetch(address: S3Address, key: str, target) -> str:
    """Download `prefix/key` from the landing zone into `target`; the sha256 its metadata records,
    for the caller to check the bytes against (FileNotFoundError if there is no such object)."""
    where = f"s3://{address.bucket}/{address.prefix}{key}"
    try:
        head = client().head_object(Bucket=address.bucket, Key=address.prefix + key)
        client().download_file(address.bucket, address.prefix + key, str(target))
    except botocore.exceptions.ClientError as e:
        if _code(e) in NOT_FOUND:
            raise FileNotFoundError(where) from None
        raise landing_refusal(address, e) from None
    except botocore.exceptions.BotoCoreError as e:
        raise landing_refusal(address, e) from None
    return head.get("Metadata", {}).get("sha256", "")
