#!/usr/bin/env python3
"""The task program of the Azure Batch Python tutorial: the top N words of a text file.

Runs on a compute node with the node's own python3 and nothing but the standard library. It
counts the words of ``--filepath``, writes the most common ``--numwords`` as ``word,count`` lines
to ``<name>_OUTPUT<ext>`` next to the input, and uploads that file to ``--storagecontainer``
with the container SAS token ``--sastoken`` (a Put Blob request, as the tutorial's storage SDK
call made). ``--blobendpoint`` is the storage account's blob URL; it defaults to Azure's
``https://<storageaccount>.blob.core.windows.net``, and an openbatch server passes its own.
"""

from __future__ import annotations

import argparse
import collections
import os
import string
import sys
import urllib.error
import urllib.parse
import urllib.request


def top_words(text: str, count: int) -> list[tuple[str, int]]:
    """The ``count`` most common words, case-folded, with the punctuation around them stripped."""
    words = (word.strip(string.punctuation).lower() for word in text.split())
    return collections.Counter(word for word in words if word).most_common(count)


def upload(blob_endpoint: str, container: str, blob_name: str, data: bytes, sas_token: str) -> None:
    """Put Blob with a container SAS: what ``BlockBlobService.create_blob_from_path`` sends."""
    url = "{}/{}/{}?{}".format(blob_endpoint.rstrip("/"), container, urllib.parse.quote(blob_name),
                               sas_token.lstrip("?"))
    request = urllib.request.Request(url, data=data, method="PUT", headers={
        "x-ms-blob-type": "BlockBlob",
        "x-ms-version": "2021-08-06",
        "Content-Type": "text/plain; charset=utf-8",
    })
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--filepath", required=True, help="The text file to process (relative to the task's "
                        "working directory, or e.g. $AZ_BATCH_NODE_SHARED_DIR/name.txt).")
    parser.add_argument("--numwords", type=int, required=True, help="How many of the most frequent words.")
    parser.add_argument("--storageaccount", required=True, help="The storage account of the output container.")
    parser.add_argument("--storagecontainer", required=True, help="The container to upload the result to.")
    parser.add_argument("--sastoken", required=True, help="A SAS token with write access to that container.")
    parser.add_argument("--blobendpoint", default=None, help="The account's blob endpoint URL "
                        "(default: https://<storageaccount>.blob.core.windows.net).")
    args = parser.parse_args(argv)

    input_file = os.path.realpath(args.filepath)
    root, ext = os.path.splitext(args.filepath)
    output_file = f"{root}_OUTPUT{ext}"

    with open(input_file, encoding="utf-8", errors="replace") as f:
        counts = top_words(f.read(), args.numwords)
    lines = "".join(f"{word},{count}\n" for word, count in counts)
    with open(output_file, "w", encoding="utf-8") as f:
        f.write(lines)

    endpoint = args.blobendpoint or f"https://{args.storageaccount}.blob.core.windows.net"
    blob_name = os.path.basename(output_file)
    print(f"Uploading file {os.path.realpath(output_file)} to container [{args.storagecontainer}]...")
    try:
        upload(endpoint, args.storagecontainer, blob_name, lines.encode("utf-8"), args.sastoken)
    except urllib.error.HTTPError as exc:
        print("upload failed: HTTP {} {} ({})".format(exc.code, exc.reason, exc.headers.get("x-ms-error-code")),
              file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"upload failed: {exc.reason}", file=sys.stderr)
        return 1
    print("Done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
