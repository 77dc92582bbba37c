# The ACL policy of the token a keyquorum node registers with ([consul] token_file):
#   consul acl policy create -name keyquorum -rules @keyquorum-policy.hcl
#   consul acl token create -description "keyquorum node" -policy-name keyquorum

# Register, refresh and deregister its own instance and checks.
service "keyquorum" {
  policy = "write"
}

# Find the active node of this or another cluster (discovery, replication).
service_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
