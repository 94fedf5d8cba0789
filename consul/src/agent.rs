//! The local agent's service registry: register, list and deregister services and their checks.
//! Used by `berth-agent`, which owns the registrations of one Docker host.
