"""``python -m grpcpki`` runs the CLI, like the ``grpcpki`` console script."""

from grpcpki.cli import main

if __name__ == "__main__":
    main(prog_name="grpcpki")
