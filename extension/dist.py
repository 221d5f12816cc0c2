"""Write the PGXN release zip: every file git tracks, plus the given built files, under one directory.

Usage: python3 extension/dist.py OUTPUT.zip PREFIX EXTRA_FILE...
"""
import subprocess
import sys
import zipfile


def main(output, prefix, extra):
    tracked = subprocess.run(["git", "ls-files", "-z"], check=True, capture_output=True, text=True).stdout
    files = sorted({f for f in tracked.split("\0") if f} | set(extra))
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f"{prefix}/{f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
