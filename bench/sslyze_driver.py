"""sslyze's certificate-info scan over many endpoints, with raised concurrency.

Runs inside bench/.venv-peers (sslyze pins its own cryptography). Verification against the
workload's root via ``custom_ca_file``. Prints ``{"ok": N, "failed": M}``.

    bench/.venv-peers/bin/python bench/sslyze_driver.py --ports-file ports.txt --ca root.pem
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sslyze import (
    CertificateInfoExtraArgument,
    ProtocolWithOpportunisticTlsEnum,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ports-file", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--starttls", choices=["imap", "smtp"], default=None)
    args = ap.parse_args()
    ports = [int(x) for x in Path(args.ports_file).read_text().split()]
    network = None
    if args.starttls:
        network = ServerNetworkConfiguration(
            tls_server_name_indication=args.host,
            tls_opportunistic_encryption=ProtocolWithOpportunisticTlsEnum[args.starttls.upper()],
        )
    extra = ScanCommandsExtraArguments(
        certificate_info=CertificateInfoExtraArgument(custom_ca_file=Path(args.ca))
    )
    scanner = Scanner(
        per_server_concurrent_connections_limit=1,
        concurrent_server_scans_limit=args.concurrency,
    )
    scanner.queue_scans(
        [
            ServerScanRequest(
                server_location=ServerNetworkLocation(args.host, p, ip_address=args.host),
                network_configuration=network,
                scan_commands={ScanCommand.CERTIFICATE_INFO},
                scan_commands_extra_arguments=extra,
            )
            for p in ports
        ]
    )
    ok = failed = 0
    for result in scanner.get_results():
        attempt = result.scan_result.certificate_info if result.scan_result else None
        if (
            result.scan_status == ServerScanStatusEnum.COMPLETED
            and attempt is not None
            and attempt.status == ScanCommandAttemptStatusEnum.COMPLETED
        ):
            ok += 1
        else:
            failed += 1
    sys.stdout.write(json.dumps({"ok": ok, "failed": failed}) + "\n")


if __name__ == "__main__":
    main()
