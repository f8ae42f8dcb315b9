require File.expand_path('lib/smart_proxy_registry_gate/version', __dir__)

Gem::Specification.new do |s|
  s.name = 'smart_proxy_registry_gate'
  s.version = Proxy::RegistryGate::VERSION
  s.summary = "registry-gate's Foreman smart-proxy plugin: Katello's container gateway sync calls, relayed to registry-gate-sidecar"
  s.description = <<~DESC
    Registers the smart-proxy feature container_gateway (in place of smart_proxy_container_gateway)
    and relays Katello's container gateway sync calls (repository_list, users,
    user_repository_mapping, update_hosts, host_repository_mapping, update_host_repositories),
    byte for byte, to registry-gate-sidecar on loopback. Authorization is smart-proxy's own
    (trusted_hosts + client certificate).
  DESC
  s.authors = ['registry-gate']
  s.homepage = 'https://example.invalid/registry-gate'
  s.license = 'Apache-2.0'
  s.files = Dir['{lib,settings.d,bundler.d}/**/*'] + ['README.md']
  s.required_ruby_version = '>= 2.7'
  # Only what smart-proxy itself already loads (sinatra, rack) and Ruby's standard library.
  s.add_dependency 'sinatra'
end
