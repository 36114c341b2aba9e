"""Transform functions for streamlab's Lambda tests, run by awslambdaric
exactly as on AWS (`python -m awslambdaric handlers.<name>`). Each exercises
one outcome of Firehose's status model or one way a function fails."""

import base64
import json
import os
import time


def _value(record):
    return json.loads(base64.b64decode(record["kafkaRecordValue"]))


def _ok(record, event, keys=None):
    out = {
        "recordId": record["recordId"],
        "result": "Ok",
        "kafkaRecordValue": base64.b64encode(json.dumps(event, separators=(",", ":")).encode()).decode(),
    }
    if keys:
        out["metadata"] = {"partitionKeys": keys}
    return out


def enrich(event, context):
    """Every record Ok: marked as enriched (with the Kafka partition it came
    from) and keyed by its event type."""
    out = []
    for record in event["records"]:
        value = _value(record)
        value["enriched"] = True
        value["kafka_partition"] = int(record["mskRecordMetadata"]["partitionId"])
        out.append(_ok(record, value, {"event_type": value.get("event_type", "none")}))
    return {"records": out}


def outcomes(event, context):
    """Each record's `mode` field says what to answer for it."""
    out = []
    for record in event["records"]:
        mode = _value(record).get("mode")
        rid = record["recordId"]
        if mode == "ok":
            out.append(_ok(record, {"transformed": _value(record)["n"]}, {"mode": "ok"}))
        elif mode == "drop":
            out.append({"recordId": rid, "result": "Dropped", "kafkaRecordValue": record["kafkaRecordValue"]})
        elif mode == "fail":
            out.append({"recordId": rid, "result": "ProcessingFailed", "kafkaRecordValue": record["kafkaRecordValue"]})
        elif mode == "missing":
            pass
        elif mode == "duplicate":
            out.append(_ok(record, {"dup": 1}))
            out.append(_ok(record, {"dup": 2}))
        elif mode == "bad-base64":
            out.append({"recordId": rid, "result": "Ok", "kafkaRecordValue": "%%% not base64 %%%"})
        elif mode == "null":
            out.append({"recordId": rid, "result": "Ok", "kafkaRecordValue": None})
        elif mode == "unknown-result":
            out.append({"recordId": rid, "result": "TRANSFORMED_STATE_OK", "kafkaRecordValue": record["kafkaRecordValue"]})
    out.append({"recordId": "a-record-id-never-sent", "result": "Ok", "kafkaRecordValue": ""})
    return {"records": out}


def throws(event, context):
    raise ValueError("this transform fails on purpose")


def sleeps(event, context):
    time.sleep(60)


def not_the_status_model(event, context):
    return "a plain string, not {records: [...]}"


def crashes_once(event, context):
    """Kills its own runtime process on the first invocation (a segfault, an
    out-of-memory kill); the restarted process transforms the batch."""
    marker = os.environ["CRASH_MARKER"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return enrich(event, context)
