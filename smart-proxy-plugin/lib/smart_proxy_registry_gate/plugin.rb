# The smart-proxy plugin declaration (smart-proxy lib/proxy/plugin.rb, lib/proxy/pluggable.rb).
#
# The plugin is named `container_gateway`, as smart_proxy_container_gateway is: smart-proxy
# advertises a plugin's name as its feature, and Katello looks the gateway up by that feature
# (`Container_Gateway`), then calls `<proxy url>/container_gateway/...`. So the two gems cannot
# be installed side by side: this one replaces the other, and reads the same settings file
# (settings.d/container_gateway.yml).
module Proxy
  module RegistryGate
    class Plugin < ::Proxy::Plugin
      plugin :container_gateway, ::Proxy::RegistryGate::VERSION

      # Loopback address of registry-gate-sidecar, and how long one relayed call may take.
      # A full sync of a large Katello can send megabytes; the sidecar validates and stores it
      # before answering, hence a generous read timeout.
      default_settings :sidecar_url => 'http://127.0.0.1:8081',
                       :sidecar_open_timeout => 5,
                       :sidecar_read_timeout => 120

      # smart-proxy runs these at start-up and disables the plugin (state :failed, logged)
      # when one fails (lib/proxy/plugin_validators.rb: Url, Presence, FileReadable).
      validate :sidecar_url, :url => true
      validate_presence :sync_secret_file
      validate_readable :sync_secret_file

      rackup_path File.expand_path('http_config.ru', __dir__)
    end
  end
end
