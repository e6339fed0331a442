"""A helper process of a large reconcile (see `reconcile._Helper`): reads its request, pickled,
on stdin; computes its share of the groups of grantees (`reconcile.compute_share`); writes the
result, pickled, on stdout. Started by the reconcile, never by hand; writes nothing to the
database.
"""
import pickle
import sys


def main() -> None:
    request = pickle.load(sys.stdin.buffer)
    result_stream, sys.stdout = sys.stdout.buffer, sys.stderr  # nothing else may reach stdout
    from .reconcile import compute_share
    result = compute_share(**request)
    pickle.dump(result, result_stream)
    result_stream.flush()


if __name__ == "__main__":
    main()
