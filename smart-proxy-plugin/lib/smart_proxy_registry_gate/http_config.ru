# Mounted by smart-proxy's launcher (lib/launcher.rb instance_evals every plugin's rackup in one
# Rack::Builder), on the proxy's own HTTPS port, at the path Katello calls.
require 'smart_proxy_registry_gate/raw_body'
require 'smart_proxy_registry_gate/api'

map '/container_gateway' do
  use Proxy::RegistryGate::RawBody
  run Proxy::RegistryGate::Api
end
