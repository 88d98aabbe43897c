"""The in-image side of the workbench: what runs inside the container.

    entrypoint  (root, once per start) validate the environment, create the user with the
                host's UID/GID, hand it its home, then drop privileges for good and, as the
                user: keys, token, sshd config, preflight notes; exec the supervisor.
    supervise   (the user) run JupyterLab, sshd and TensorBoard, prefix their output,
                restart crashes with backoff, stop them gracefully on SIGTERM.
    health      the image's HEALTHCHECK.

The contract with the image and `torchrig up` is written down in docs/workbench.md.

Only the standard library is used here: these modules run in the image's venv, which has
torchrig without its host-side dependencies (pydantic, rich). Importing them must not import
any other torchrig package.
"""
