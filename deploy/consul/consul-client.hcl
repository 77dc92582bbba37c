# A Consul client agent for a host that runs a keyquorum node; install as
# /etc/consul.d/consul.hcl. Everything keyquorum needs is marked; the rest is an
# ordinary client agent, to adapt to your datacenter.

datacenter = "dc1"
data_dir   = "/opt/consul"
server     = false
retry_join = ["consul-server-1.example.internal", "consul-server-2.example.internal",
              "consul-server-3.example.internal"]

# keyquorum: the node reaches the agent's HTTP API on loopback, as its [consul]
# section says (address = "127.0.0.1:8500", scheme = "http"). Serve HTTPS on 8501
# instead and set scheme = "https" with ca_file, cert_file and key_file there.
client_addr = "127.0.0.1"
ports {
  http  = 8500
  https = -1
  dns   = 8600
}

# keyquorum: the agent checks https://127.0.0.1:<api port>/v1/sys/health and
# verifies the certificate (the node registers TLSSkipVerify = false). HTTP checks
# use the agent's own TLS settings only with enable_agent_tls_for_checks, and then
# trust the CAs below: put keyquorum's ca.pem in this folder, beside the CA of your
# Consul servers if you use TLS between agents.
enable_agent_tls_for_checks = true
tls {
  defaults {
    ca_path = "/etc/consul.d/ca"
  }
}

# keyquorum: a standby answers 429, which Consul reads as a warning. DNS must keep
# warning instances for standby.keyquorum.service.consul to answer: only_passing
# stays false (Consul's default). A sealed, cut-off or dead node is critical and
# is left out of every DNS answer either way.
dns_config {
  only_passing = false
  # Answers may be cached this long; the active tag moves within a second.
  service_ttl {
    "keyquorum" = "0s"
  }
}

# keyquorum: with ACLs, give the node a token (its [consul] token_file) whose
# policy is keyquorum-policy.hcl in this folder.
acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
}
