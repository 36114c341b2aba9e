// A Firehose transform for shop events, as deployed to AWS Lambda (Node.js).
//
// The same rules as examples/python-transform: orders are enriched and
// re-keyed by event type (`!{partitionKeyFromLambda:event_type}`), page views
// are dropped, and a record that is not JSON is failed, so Firehose writes it
// under `processing-failed` with its original bytes. MSK sources send and
// expect `kafkaRecordValue`, base64.

const band = (cents) => (cents >= 10000 ? "large" : cents >= 3000 ? "medium" : "small");

function transform(record) {
  let event;
  try {
    event = JSON.parse(Buffer.from(record.kafkaRecordValue, "base64").toString("utf8"));
  } catch {
    return { recordId: record.recordId, result: "ProcessingFailed", kafkaRecordValue: record.kafkaRecordValue };
  }
  const kind = event.event_type ?? "unknown";
  if (kind === "page_viewed") {
    return { recordId: record.recordId, result: "Dropped", kafkaRecordValue: record.kafkaRecordValue };
  }
  if (kind === "order_placed") {
    event.total_eur = Math.round(event.total) / 100;
    event.size = band(event.total);
    event.partition = Number(record.mskRecordMetadata.partitionId);
  }
  return {
    recordId: record.recordId,
    result: "Ok",
    kafkaRecordValue: Buffer.from(JSON.stringify(event) + "\n").toString("base64"),
    metadata: { partitionKeys: { event_type: kind } },
  };
}

exports.handler = async (event) => ({ records: event.records.map(transform) });
