# berth/consul: the Consul binary of this host (.tools/consul from scripts/setup.sh consul, or
# PATH) FROM scratch, plus the shared libraries ldd lists for it (built by
# deploy/build-images.sh), because nothing can be pulled from a registry here.
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/consul"]
CMD ["agent", "-dev", "-client", "127.0.0.1", "-bind", "127.0.0.1"]
