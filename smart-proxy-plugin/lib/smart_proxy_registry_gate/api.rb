require 'json'
require 'net/http'
require 'sinatra/base'
require 'uri'
require 'smart_proxy_registry_gate/plugin'

module Proxy
  module RegistryGate
    # Katello's sync calls, relayed to registry-gate-sidecar on loopback.
    #
    # This app owns exactly two things: smart-proxy's authorization of the caller, and moving
    # bytes. It must never parse, validate or rewrite a body: the sidecar does all of that, so
    # there is one parser of Katello's form encoding and it is tested in Rust. What Katello
    # sends is described in the repository's research notes (katello-wire.md).
    class Api < ::Sinatra::Base
      include ::Proxy::Log
      helpers ::Proxy::Helpers
      # smart-proxy lib/sinatra/authorization.rb: `do_authorize_any` = the client certificate's
      # CN is in :trusted_hosts (when set) and, on HTTPS, a client certificate was presented.
      # The same check smart_proxy_container_gateway makes on these endpoints.
      helpers ::Sinatra::Authorization::Helpers

      # The PUT endpoints, by the name Katello's ProxyAPI::ContainerGateway appends to
      # `/container_gateway`. Katello sends them with a trailing slash (RestClient `[""]`).
      SYNC_CALLS = %w[
        repository_list
        user_repository_mapping
        update_hosts
        host_repository_mapping
        update_host_repositories
      ].freeze

      put %r{/(#{SYNC_CALLS.join('|')})/?} do |name|
        do_authorize_any
        relay(Net::HTTP::Put.new(sidecar_uri(name)), request.body.read)
      end

      get '/users/?' do
        do_authorize_any
        relay(Net::HTTP::Get.new(sidecar_uri('users')), nil)
      end

      helpers do
        def plugin_settings
          ::Proxy::RegistryGate::Plugin.settings
        end

        def sidecar_uri(name)
          URI("#{plugin_settings.sidecar_url.to_s.chomp('/')}/container_gateway/#{name}")
        end

        # Read on every call, so rotating the secret needs no restart of the smart proxy.
        def sync_secret
          File.read(plugin_settings.sync_secret_file).strip
        rescue SystemCallError => e
          relay_failed 500, "cannot read :sync_secret_file: #{e.message}"
        end

        # Sends `forward` (with `body`, byte for byte) to the sidecar and answers Katello with
        # the sidecar's status. A successful PUT answers with an empty body, as
        # smart_proxy_container_gateway did (Foreman's ProxyAPI reads an empty 2xx as true).
        def relay(forward, body)
          forward['Authorization'] = "Bearer #{sync_secret}"
          forward['Accept'] = 'application/json'
          forward['X-Request-Id'] = request.env['HTTP_X_REQUEST_ID'] if request.env['HTTP_X_REQUEST_ID']
          unless body.nil?
            forward['Content-Type'] = request.env['CONTENT_TYPE'] if request.env['CONTENT_TYPE']
            forward.body = body
          end

          started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
          answer = send_to_sidecar(forward)
          elapsed_ms = ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - started) * 1000).round
          code = answer.code.to_i
          summary = "#{forward.method} #{forward.path} (#{body ? body.bytesize : 0} bytes) -> #{code} in #{elapsed_ms} ms"

          status code
          if code.between?(200, 299)
            logger.info "registry-gate: relayed #{summary}"
            return '' unless forward.is_a?(Net::HTTP::Get)

            content_type :json
            answer.body.to_s
          else
            logger.warn "registry-gate: sidecar refused #{summary}: #{answer.body.to_s[0, 500]}"
            content_type answer['Content-Type'] if answer['Content-Type']
            answer.body.to_s
          end
        end

        def send_to_sidecar(forward)
          uri = forward.uri
          Net::HTTP.start(uri.host, uri.port,
                          :use_ssl => uri.scheme == 'https',
                          :open_timeout => plugin_settings.sidecar_open_timeout.to_f,
                          :read_timeout => plugin_settings.sidecar_read_timeout.to_f,
                          :write_timeout => plugin_settings.sidecar_read_timeout.to_f) do |http|
            http.request(forward)
          end
        rescue Net::OpenTimeout, Net::ReadTimeout, Net::WriteTimeout => e
          relay_failed 504, "registry-gate sidecar at #{uri.host}:#{uri.port} timed out (#{e.class})"
        rescue SystemCallError, IOError, SocketError, OpenSSL::SSL::SSLError, Net::HTTPBadResponse => e
          relay_failed 502, "registry-gate sidecar at #{uri.host}:#{uri.port} unreachable: #{e.message}"
        end

        # The only error this app makes up itself: logged, then a short JSON answer.
        def relay_failed(code, message)
          logger.error "registry-gate: #{request.request_method} #{request.path_info}: #{message}"
          content_type :json
          halt code, JSON.generate(:error => message)
        end
      end
    end
  end
end
