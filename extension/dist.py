"""Write the PGXN release zip: the source files (tracked, or new and not ignored) and the built ones given.

Usage: python3 extension/dist.py OUTPUT.zip PREFIX EXTRA_FILE...
"""
import subprocess
import sys
import zipfile


def main(output, prefix, extra):
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], check=True, capture_output=True, text=True).stdout
    files = sorted({f for f in tracked.split("\0") if f} | set(extra))
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f"{prefix}/{f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
