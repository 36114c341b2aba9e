#!/bin/sh
# LocalStack ready hook: the bucket of fixtures/streams/orders-to-s3.json.
awslocal s3 mb s3://shop-events-raw
