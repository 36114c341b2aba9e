"""A Firehose transform for shop events, as deployed to AWS Lambda.

Orders are enriched (total in euros, a size band) and re-keyed by event type
for dynamic partitioning (`!{partitionKeyFromLambda:event_type}` in the
stream's prefix); page views are dropped; a record that is not JSON is
failed, so Firehose writes it under `processing-failed` with its original
bytes. The event and response shapes are Firehose's for MSK sources:
`kafkaRecordValue` in, `kafkaRecordValue` out, both base64.
"""

import base64
import json


def band(total_cents: int) -> str:
    if total_cents >= 10_000:
        return "large"
    return "medium" if total_cents >= 3_000 else "small"


def transform(record: dict) -> dict:
    try:
        event = json.loads(base64.b64decode(record["kafkaRecordValue"]))
    except ValueError:
        return {"recordId": record["recordId"], "result": "ProcessingFailed", "kafkaRecordValue": record["kafkaRecordValue"]}
    kind = event.get("event_type", "unknown")
    if kind == "page_viewed":
        return {"recordId": record["recordId"], "result": "Dropped", "kafkaRecordValue": record["kafkaRecordValue"]}
    if kind == "order_placed":
        event["total_eur"] = round(event["total"] / 100, 2)
        event["size"] = band(event["total"])
        event["partition"] = int(record["mskRecordMetadata"]["partitionId"])
    data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    return {
        "recordId": record["recordId"],
        "result": "Ok",
        "kafkaRecordValue": base64.b64encode(data).decode(),
        "metadata": {"partitionKeys": {"event_type": kind}},
    }


def handler(event, context):
    return {"records": [transform(r) for r in event["records"]]}
