# berth/proxy: the data plane (berth-proxy), FROM scratch: the binary at /berth-proxy plus the
# shared libraries ldd lists for it (built by deploy/build-images.sh).
# It must reach the containers at the addresses the agent registered (127.0.0.1:<published port>
# with -ip 127.0.0.1), so it runs with host networking (see deploy/docker-compose.yml).
FROM scratch
COPY rootfs/ /
ENV RUST_LOG=info
ENTRYPOINT ["/berth-proxy"]
