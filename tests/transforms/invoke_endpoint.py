"""A minimal Lambda Invoke API endpoint (POST
/2015-03-31/functions/<name>/invocations), standing in for `sam local
start-lambda` or LocalStack in streamlab's tests: it calls a handler from
handlers.py in process and answers as Lambda does, a function error with
200 and `X-Amz-Function-Error: Unhandled`, an unknown function with 404
ResourceNotFoundException. Prints its port, then serves until killed.

    python invoke_endpoint.py  # function names map to handlers.<name>
"""

import json
import re
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import handlers

ROUTE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")


class Invoke(BaseHTTPRequestHandler):
    def do_POST(self):
        match = ROUTE.match(self.path.split("?")[0])
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if not match:
            return self.answer(404, {"message": "not an Invoke route"}, {"x-amzn-ErrorType": "UnknownOperationException"})
        name = unquote(match.group(1)).split(":")[6] if unquote(match.group(1)).startswith("arn:") else unquote(match.group(1))
        handler = getattr(handlers, name, None)
        if handler is None:
            return self.answer(
                404,
                {"Type": "User", "message": f"Function not found: {name}"},
                {"x-amzn-ErrorType": "ResourceNotFoundException"},
            )
        try:
            result = handler(json.loads(body), None)
        except Exception as e:  # the function's error, as Lambda reports it
            return self.answer(
                200,
                {"errorMessage": str(e), "errorType": type(e).__name__, "stackTrace": traceback.format_exc().splitlines()},
                {"X-Amz-Function-Error": "Unhandled"},
            )
        self.answer(200, result, {"X-Amz-Executed-Version": "$LATEST"})

    def answer(self, status, document, headers):
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Invoke)
    print(server.server_address[1], flush=True)
    server.serve_forever()
