# berth/control: the control plane (berth-control), FROM scratch: the binary at /berth-control
# plus the shared libraries ldd lists for it (built by deploy/build-images.sh).
# It serves gRPC to the proxies and an admin HTTP API; run it with host networking (see
# deploy/docker-compose.yml) or publish --grpc-addr / --admin-addr yourself, bound to 0.0.0.0.
FROM scratch
COPY rootfs/ /
ENV RUST_LOG=info
ENTRYPOINT ["/berth-control"]
