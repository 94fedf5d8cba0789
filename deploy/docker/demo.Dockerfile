# berth/demo: the demo HTTP backend (the article's web_go / web_python stand-in), FROM scratch.
# Built by deploy/build-images.sh, whose build context holds rootfs/: the binary at /berth-demo
# plus the shared libraries ldd lists for it.
#
# Configure it with env vars: DEMO_LISTEN (default 0.0.0.0:9090), DEMO_NAME (default: the
# container's hostname, i.e. its short id), DEMO_SERVICE (the service name in answers).
# No EXPOSE on purpose: the listen port is configurable (web_python listens on 5000), and a
# registrator-style agent running with -internal would register an exposed port that is unused.
FROM scratch
COPY rootfs/ /
ENV DEMO_LISTEN=0.0.0.0:9090
# Exec form (no shell in the image): probes GET http://127.0.0.1:<port of DEMO_LISTEN>/health.
HEALTHCHECK --interval=5s --timeout=3s --start-period=1s --retries=2 CMD ["/berth-demo", "--probe"]
ENTRYPOINT ["/berth-demo"]
