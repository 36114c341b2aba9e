// Writes the backend's events to a DirectPut Firehose stream with
// PutRecordBatch, as the service does in production: batches of up to 500
// records, and only the records a batch answers as failed
// (FailedPutCount, e.g. ServiceUnavailableException "Slow down.") sent again
// with backoff. No endpoint or credentials in the code: the SDK reads
// AWS_ENDPOINT_URL_FIREHOSE and AWS_REGION, which `streamlab run` and the env
// file of `streamlab up` set. STREAM, EVENTS and SEED configure it.
const { FirehoseClient, PutRecordBatchCommand } = require('@aws-sdk/client-firehose');
const { events } = require('../node-producer/shop');

const BATCH = 500;

async function putAll(client, stream, records) {
  let pending = records;
  for (let attempt = 0; pending.length > 0; attempt += 1) {
    if (attempt > 0) {
      if (attempt > 20) {
        throw new Error(`${pending.length} records still refused after ${attempt} attempts`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 5000)));
    }
    const answer = await client.send(new PutRecordBatchCommand({ DeliveryStreamName: stream, Records: pending }));
    if (!answer.FailedPutCount) {
      return;
    }
    pending = pending.filter((_, i) => answer.RequestResponses[i].ErrorCode);
  }
}

async function main() {
  if (!process.env.AWS_ENDPOINT_URL_FIREHOSE) {
    throw new Error('AWS_ENDPOINT_URL_FIREHOSE is not set; run under `streamlab run`, or `source` the env file of `streamlab up`');
  }
  const stream = process.env.STREAM || 'shop-clickstream';
  const count = Number(process.env.EVENTS || 2000);
  const seed = Number(process.env.SEED || 11);
  const client = new FirehoseClient({});
  let batch = [];
  let sent = 0;
  for (const event of events({ seed, count, customers: 40 })) {
    // Firehose adds no delimiter: one JSON object per line, as readers expect.
    batch.push({ Data: Buffer.from(`${JSON.stringify(event)}\n`) });
    if (batch.length === BATCH) {
      await putAll(client, stream, batch);
      sent += batch.length;
      batch = [];
    }
  }
  if (batch.length > 0) {
    await putAll(client, stream, batch);
    sent += batch.length;
  }
  console.log(`put ${sent} events to Firehose stream ${stream}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
