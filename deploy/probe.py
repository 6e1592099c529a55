#!/usr/bin/python3
"""Kubernetes probes for a datafeed-producer, over the producer's own TLS.

    probe.py live  --address 127.0.0.1:5000 [TLS flags]
        grpc.health.v1.Health/Check answers SERVING (the producer's gRPC
        server is up). The kubelet's built-in grpc probe cannot do TLS, so
        a producer serving mTLS is probed with this instead.
    probe.py ready --address 127.0.0.1:5000 [TLS flags] [--min-batches 1]
        datafeed.v1.DataFeed/GetStats says at least --min-batches batches
        were published: the producer has its first batch ready, so a
        trainer that finds it through the headless Service gets data at once.

TLS flags: --tls-ca (verify the producer), --tls-cert/--tls-key (client
certificate, when the producer requires one: --tls-client-ca),
--tls-server-name (the name in the producer's certificate; the probe dials
an address), --auth-token-file (the producer's bearer token). Without
--tls-ca it dials plaintext (a producer started with --insecure).

Exit 0: healthy / ready. Exit 1, with the reason on stderr: not (yet).
Needs python3-grpcio (Debian); the messages are read by hand (two fields),
so no generated code is needed.
"""
import argparse
import sys

import grpc


def read_varint_field(data, field):
    """The value of varint field `field` in a protobuf message (0 if absent)."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            if num == field:
                return value
        elif wire == 2:
            n, i = _varint(data, i)
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError("unexpected protobuf wire type %d" % wire)
    return 0


def _varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("check", choices=["live", "ready"])
    p.add_argument("--address", default="127.0.0.1:5000")
    p.add_argument("--tls-ca")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--tls-server-name")
    p.add_argument("--auth-token-file")
    p.add_argument("--min-batches", type=int, default=1)
    p.add_argument("--timeout", type=float, default=3.0, help="seconds for the call")
    a = p.parse_args()

    if a.tls_ca:
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(a.tls_ca),
            private_key=read(a.tls_key) if a.tls_key else None,
            certificate_chain=read(a.tls_cert) if a.tls_cert else None)
        options = [("grpc.ssl_target_name_override", a.tls_server_name)] if a.tls_server_name else []
        channel = grpc.secure_channel(a.address, creds, options=options)
    else:
        channel = grpc.insecure_channel(a.address)
    metadata = []
    if a.auth_token_file:
        metadata.append(("authorization", "Bearer " + read(a.auth_token_file).decode().splitlines()[0].strip()))
    if a.check == "live":
        method, what = "/grpc.health.v1.Health/Check", "health check"
    else:
        method, what = "/datafeed.v1.DataFeed/GetStats", "GetStats"
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        reply = call(b"", timeout=a.timeout, metadata=metadata)
    except grpc.RpcError as e:
        print("datafeed probe: %s %s: %s: %s" % (a.address, what, e.code().name, e.details()), file=sys.stderr)
        return 1
    if a.check == "live":
        status = read_varint_field(reply, 1)  # HealthCheckResponse.status: 1 = SERVING
        if status != 1:
            print("datafeed probe: %s health status %d, not SERVING (1)" % (a.address, status), file=sys.stderr)
            return 1
        return 0
    published = read_varint_field(reply, 1)  # StatsResponse.batches_published
    if published < a.min_batches:
        print("datafeed probe: %s has published %d batches, not yet %d" % (a.address, published, a.min_batches),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
