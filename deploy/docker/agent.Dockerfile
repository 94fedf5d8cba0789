# berth/agent: the Registrator drop-in (berth-agent), FROM scratch: the binary at /berth-agent
# plus the shared libraries ldd lists for it (built by deploy/build-images.sh).
# Mount the engine's socket: -v /var/run/docker.sock:/var/run/docker.sock (Registrator's
# /tmp/docker.sock mount works too with -e DOCKER_HOST=unix:///tmp/docker.sock).
FROM scratch
COPY rootfs/ /
ENV RUST_LOG=info
ENTRYPOINT ["/berth-agent"]
