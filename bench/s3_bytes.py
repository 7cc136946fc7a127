#!/usr/bin/env python3
"""Prints "<bytes> <objects>" stored under a prefix of an S3 bucket, from ListObjectsV2.

    python3 bench/s3_bytes.py BUCKET PREFIX

The same count for every tool writing to the bucket (the sum of the listed object sizes),
with nothing but the standard library: requests are signed with AWS Signature Version 4
from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (or AWS_DEFAULT_REGION) and
AWS_ENDPOINT_URL (path-style addressing, as Garage and MinIO serve it), the variables
scripts/garage-up writes to its env file.
"""
import datetime
import hashlib
import hmac
import os
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def quote(s):
    return urllib.parse.quote(s, safe="-_.~")


def signed_get(endpoint, bucket, query, key_id, secret, region):
    url = urllib.parse.urlsplit(endpoint)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    canonical_query = "&".join(f"{quote(k)}={quote(v)}" for k, v in sorted(query.items()))
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": url.netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        ["GET", f"/{quote(bucket)}", canonical_query]
        + [f"{k}:{headers[k]}" for k in sorted(headers)]
        + ["", signed, payload]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    k = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed}, "
        f"Signature={signature}"
    )
    req = urllib.request.Request(
        f"{endpoint.rstrip('/')}/{quote(bucket)}?{canonical_query}", headers=headers
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return ET.fromstring(r.read())


def main():
    bucket, prefix = sys.argv[1], sys.argv[2]
    env = os.environ
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    total = count = 0
    query = {"list-type": "2", "prefix": prefix}
    while True:
        doc = signed_get(
            env["AWS_ENDPOINT_URL"], bucket, query,
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], region,
        )
        for c in doc.iter(f"{NS}Contents"):
            total += int(c.find(f"{NS}Size").text)
            count += 1
        token = doc.find(f"{NS}NextContinuationToken")
        if doc.findtext(f"{NS}IsTruncated") != "true" or token is None:
            break
        query["continuation-token"] = token.text
    print(total, count)


if __name__ == "__main__":
    main()
