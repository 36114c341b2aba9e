"""A team's runbook alarm, proven on the stack's clock with boto3: 500
records land and CloudWatch's sums say so; a freshness alarm
(DeliveryToS3.DataFreshness Maximum > 600 for one 60 s period) is OK; the
bucket is deleted, 500 more records wait, and 16 one-minute clock steps
later the alarm is ALARM, its history says why and DeliveryToS3.Success
has zeros; the bucket comes back, the held records land, none lost, and
the alarm is OK again; Firehose's S3.NoSuchBucket events are in the log
group and stream the spec names. Endpoints come from the environment (`streamlab
run`); the clock is moved through the control endpoint."""
import datetime
import json
import os
import time
import urllib.error
import urllib.request

import boto3
from confluent_kafka import Producer

STREAM, TOPIC, BUCKET = "orders-to-s3", "shop-events", "shop-events-raw"
DIMENSIONS = [{"Name": "DeliveryStreamName", "Value": STREAM}]
cw = boto3.client("cloudwatch")
logs = boto3.client("logs")
s3 = boto3.client("s3")
control = os.environ["STREAMLAB_CONTROL"]


def call(path, body):
    request = urllib.request.Request(
        control + path, data=json.dumps(body).encode(), method="POST", headers={"content-type": "application/json"}
    )
    try:
        return json.loads(urllib.request.urlopen(request).read() or b"{}")
    except urllib.error.HTTPError as e:
        # Advancing while S3 fails answers 502 once the clock has moved.
        return json.loads(e.read() or b"{}")


def advance(by):
    return call("/v1/clock/advance", {"by": by})


def now():
    status = json.loads(urllib.request.urlopen(control + "/v1/status").read())
    return datetime.datetime.fromtimestamp(status["clock"]["now_ms"] / 1000, tz=datetime.timezone.utc)


def produce(first, n):
    producer = Producer({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP"]})
    for i in range(first, first + n):
        producer.produce(TOPIC, json.dumps({"event_id": f"e-{i}", "n": i}).encode())
    assert producer.flush(30) == 0
    call("/v1/settle", {"timeout": "30s"})


def total(metric, statistic="Sum"):
    end = now() + datetime.timedelta(minutes=1)
    answer = cw.get_metric_statistics(
        Namespace="AWS/Firehose", MetricName=metric, Dimensions=DIMENSIONS,
        StartTime=end - datetime.timedelta(hours=2), EndTime=end, Period=60, Statistics=[statistic],
    )
    return [p[statistic] for p in sorted(answer["Datapoints"], key=lambda p: p["Timestamp"])]


def alarm_state():
    return cw.describe_alarms(AlarmNames=["orders-freshness"])["MetricAlarms"][0]["StateValue"]


def landed_ids():
    ids = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for o in page.get("Contents", []):
            body = s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            decoder, text = json.JSONDecoder(), body.decode()
            pos = 0
            while pos < len(text):
                value, pos = decoder.raw_decode(text, pos)
                ids.append(value["event_id"])
    return ids


produce(0, 500)
advance("5m")  # the buffer interval passes: 500 land
advance("1m")  # ...and the minute they landed in closes
assert sum(total("DataReadFromSource.Records")) == 500, total("DataReadFromSource.Records")
assert sum(total("DeliveryToS3.Records")) == 500, total("DeliveryToS3.Records")
start = now() - datetime.timedelta(hours=1)
data = cw.get_metric_data(
    MetricDataQueries=[{"Id": "read", "MetricStat": {"Metric": {"Namespace": "AWS/Firehose", "MetricName": "DataReadFromSource.Records",
                                                                "Dimensions": DIMENSIONS}, "Period": 60, "Stat": "Sum"}}],
    StartTime=start, EndTime=now() + datetime.timedelta(minutes=1),
)
assert sum(data["MetricDataResults"][0]["Values"]) == 500, data

cw.put_metric_alarm(
    AlarmName="orders-freshness", Namespace="AWS/Firehose", MetricName="DeliveryToS3.DataFreshness",
    Dimensions=DIMENSIONS, Statistic="Maximum", Period=60, EvaluationPeriods=1, Threshold=600,
    ComparisonOperator="GreaterThanThreshold", TreatMissingData="breaching",
)
assert alarm_state() == "INSUFFICIENT_DATA"
advance("1m")
assert alarm_state() == "OK", alarm_state()

# The bucket goes away: the next 500 records cannot land.
for key in [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]:
    s3.delete_object(Bucket=BUCKET, Key=key)
s3.delete_bucket(Bucket=BUCKET)
produce(500, 500)
for _ in range(16):
    advance("1m")
assert alarm_state() == "ALARM", (alarm_state(), total("DeliveryToS3.DataFreshness", "Maximum"), total("DataReadFromSource.Records"), total("DeliveryToS3.Success", "SampleCount"), s3.list_buckets()["Buckets"])
history = cw.describe_alarm_history(AlarmName="orders-freshness", HistoryItemType="StateUpdate")["AlarmHistoryItems"]
assert history[0]["HistorySummary"] == "Alarm updated from OK to ALARM", history[0]
reason = json.loads(history[0]["HistoryData"])["newState"]["stateReason"]
assert "was greater than the threshold (600.0)" in reason, reason
assert 0.0 in total("DeliveryToS3.Success", "Minimum"), total("DeliveryToS3.Success", "Minimum")
# Firehose's error events, in the group and stream the spec names.
errors = logs.filter_log_events(
    logGroupName="/aws/kinesisfirehose/orders-to-s3", logStreamNames=["DestinationDelivery"],
    filterPattern='{ $.errorCode = "S3.NoSuchBucket" }',
)["events"]
assert errors, "no S3.NoSuchBucket log events"
event = json.loads(errors[0]["message"])
assert event["destination"] == f"arn:aws:s3:::{BUCKET}" and event["deliveryStreamVersionId"] == 1, event
assert event["message"].startswith("The specified bucket does not exist."), event

# The bucket is back: the held records land, none lost, and the alarm clears.
s3.create_bucket(Bucket=BUCKET)
for _ in range(60):
    advance("1m")
    if len(landed_ids()) >= 500:
        break
    time.sleep(0.5)
ids = landed_ids()
assert sorted(ids) == sorted(f"e-{i}" for i in range(500, 1000)), (len(ids), len(set(ids)))
advance("1m")
assert alarm_state() == "OK", alarm_state()
print(f"cloudwatch: 500 read and delivered by the metrics; alarm OK -> ALARM -> OK; {len(errors)} S3.NoSuchBucket log events; {len(ids)} held records landed once")
