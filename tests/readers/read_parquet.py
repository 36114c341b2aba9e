"""Reads a stream's landed Parquet objects with independent readers, as
analytics would: pyarrow through the S3 API (a dataset over `s3://bucket/
prefix`, hive-style `dt=` partitions, the way a query engine scans a table),
pyarrow per object (schema, codec, rows), and DuckDB over the same files
downloaded. Prints one JSON document for the test to check.

    python read_parquet.py BUCKET PREFIX   # S3 endpoint and keys from AWS_* variables
"""

import json
import os
import sys
import tempfile

import boto3
import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def main() -> int:
    bucket, prefix = sys.argv[1], sys.argv[2]
    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    s3 = pafs.S3FileSystem(
        endpoint_override=endpoint,
        scheme="http",
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region=os.environ.get("AWS_REGION", "us-east-1"),
    )
    dataset = ds.dataset(f"{bucket}/{prefix}", filesystem=s3, format="parquet", partitioning="hive")
    table = dataset.to_table()
    out = {
        "dataset_rows": table.num_rows,
        "dataset_columns": table.schema.names,
        "partitions": sorted({str(v) for v in table.column("dt").to_pylist()}) if "dt" in table.schema.names else [],
        "objects": [],
    }
    client = boto3.client("s3")
    with tempfile.TemporaryDirectory() as tmp:
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
        for n, key in enumerate(sorted(keys)):
            path = os.path.join(tmp, f"{n}.parquet")
            client.download_file(bucket, key, path)
            meta = pq.ParquetFile(path).metadata
            rows = pq.read_table(path).to_pylist()
            out["objects"].append({
                "key": key,
                "rows": meta.num_rows,
                "codec": meta.row_group(0).column(0).compression,
                "schema": {f.name: str(f.type) for f in pq.read_schema(path)},
                "event_ids": [r["event_id"] for r in rows],
                "first": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in rows[0].items()} if rows else None,
            })
        con = duckdb.connect()
        glob = os.path.join(tmp, "*.parquet")
        count, orders, total = con.execute(
            f"select count(*), count(*) filter (where event_type = 'order_placed'), sum(total) filter (where event_type = 'order_placed') from read_parquet('{glob}')"
        ).fetchone()
        out["duckdb"] = {"rows": count, "orders": orders, "order_total": int(total or 0)}
        out["duckdb_types"] = dict(con.execute(f"select column_name, column_type from (describe select * from read_parquet('{glob}'))").fetchall())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
