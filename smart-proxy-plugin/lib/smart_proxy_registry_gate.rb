# Entry point smart-proxy's bundler loads (bundler.d/registry_gate.rb). It only declares the
# plugin; the Sinatra app is required by the rackup file when smart-proxy builds its Rack app.
require 'smart_proxy_registry_gate/version'
require 'smart_proxy_registry_gate/plugin'
