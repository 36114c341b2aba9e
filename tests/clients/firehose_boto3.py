"""A team's boto3 code against the stack's Firehose endpoint, found through
AWS_ENDPOINT_URL_FIREHOSE alone: streams created from the fixture files,
listed by type, tagged, fed with put_record_batch (failed records resent),
updated with the version from describe, and AWS's error classes for a taken
name, a stale version and a put to an MSK stream. The DirectPut stream is
left running so `streamlab run --expect` checks what landed."""
import json
import time

import boto3

client = boto3.client("firehose")


def load(path):
    with open(path) as f:
        return json.load(f)


def wait(name, status="ACTIVE"):
    for _ in range(600):
        d = client.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        if d["DeliveryStreamStatus"] == status:
            return d
        time.sleep(0.05)
    raise SystemExit(f"{name} did not become {status}")


direct = load("fixtures/direct-put/clickstream.json")
msk = load("fixtures/streams/orders-to-s3.json")
for spec in (direct, msk):
    arn = client.create_delivery_stream(**spec)["DeliveryStreamARN"]
    assert arn.endswith(":deliverystream/" + spec["DeliveryStreamName"]), arn
try:
    client.create_delivery_stream(**msk)
    raise SystemExit("a taken name was accepted")
except client.exceptions.ResourceInUseException:
    pass

d = wait("clickstream")
assert d["DeliveryStreamType"] == "DirectPut" and d["VersionId"] == "1", d
assert d["DeliveryStreamEncryptionConfiguration"]["Status"] == "DISABLED", d
m = wait("orders-to-s3")
assert m["Source"]["MSKSourceDescription"]["TopicName"] == msk["MSKSourceConfiguration"]["TopicName"], m
assert client.list_delivery_streams(DeliveryStreamType="DirectPut")["DeliveryStreamNames"] == ["clickstream"]
assert client.list_delivery_streams(DeliveryStreamType="MSKAsSource")["DeliveryStreamNames"] == ["orders-to-s3"]
page = client.list_delivery_streams(Limit=1)
assert page["DeliveryStreamNames"] == ["clickstream"] and page["HasMoreDeliveryStreams"], page

client.tag_delivery_stream(DeliveryStreamName="clickstream", Tags=[{"Key": "cost-center", "Value": "42"}])
client.untag_delivery_stream(DeliveryStreamName="clickstream", TagKeys=["team"])
tags = client.list_tags_for_delivery_stream(DeliveryStreamName="clickstream")["Tags"]
assert tags == [{"Key": "cost-center", "Value": "42"}], tags

try:
    client.put_record(DeliveryStreamName="orders-to-s3", Record={"Data": b"{}"})
    raise SystemExit("a put to an MSK stream was accepted")
except client.exceptions.InvalidArgumentException:
    pass

sent = 0
for batch in range(6):
    pending = [{"Data": (json.dumps({"n": batch * 500 + i}) + "\n").encode()} for i in range(500)]
    while pending:
        answer = client.put_record_batch(DeliveryStreamName="clickstream", Records=pending)
        pending = [r for r, a in zip(pending, answer["RequestResponses"]) if "ErrorCode" in a]
    sent += 500
    if batch == 2:
        # Half way, a new prefix: version 2 from here on.
        try:
            client.update_destination(
                DeliveryStreamName="clickstream",
                CurrentDeliveryStreamVersionId="7",
                DestinationId=d["Destinations"][0]["DestinationId"],
                ExtendedS3DestinationUpdate={"Prefix": "v2/"},
            )
            raise SystemExit("a stale version was accepted")
        except client.exceptions.ConcurrentModificationException:
            pass
        client.update_destination(
            DeliveryStreamName="clickstream",
            CurrentDeliveryStreamVersionId=d["VersionId"],
            DestinationId=d["Destinations"][0]["DestinationId"],
            ExtendedS3DestinationUpdate={"Prefix": "v2/"},
        )
        assert wait("clickstream")["VersionId"] == "2"

client.delete_delivery_stream(DeliveryStreamName="orders-to-s3")
for _ in range(600):
    try:
        client.describe_delivery_stream(DeliveryStreamName="orders-to-s3")
        time.sleep(0.05)
    except client.exceptions.ResourceNotFoundException:
        break
else:
    raise SystemExit("orders-to-s3 was not deleted")
print(f"boto3: put {sent} records to clickstream across an update; every call answered as AWS does")
