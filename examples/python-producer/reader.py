"""A downstream reader, as the analytics job would be: lists the landed
objects through the S3 API and checks the orders it finds.

boto3 reads the stack's endpoint and credentials from the environment
(AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, ...), as any AWS SDK does.
"""

import json
import os
import sys

import boto3

BUCKET = os.environ.get("BUCKET", "shop-orders")
EXPECTED = int(os.environ.get("EVENTS", "500"))


def main() -> int:
    s3 = boto3.client("s3")
    orders = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="orders/"):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode()
            orders.extend(json.loads(line) for line in body.splitlines() if line)
    revenue = sum(o["total"] for o in orders)
    ids = {o["event_id"] for o in orders}
    print(f"reader: {len(orders)} orders, {len(ids)} distinct, revenue {revenue / 100:.2f} EUR")
    if len(orders) != EXPECTED or len(ids) != EXPECTED:
        print(f"reader: expected {EXPECTED} distinct orders", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
