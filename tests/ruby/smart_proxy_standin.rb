#!/usr/bin/ruby
# A stand-in for Foreman's smart-proxy, just big enough to run smart_proxy_registry_gate the way
# a real smart proxy would. smart-proxy is not packaged for Debian and gems cannot be fetched
# here, so the pieces the plugin touches are re-implemented from smart-proxy's public code
# (theforeman/smart-proxy, read at e8fe59f8); each section names the file it mirrors.
#
# It must behave like smart-proxy wherever the plugin or Katello can tell the difference:
# TLS with an optional, CA-verified client certificate; `do_authorize_any`; the plugin DSL and
# settings; the rackup mounted in one Rack::Builder under WEBrick. Everything else of
# smart-proxy (other plugins, HTTP port, DNS checks, log buffer, daemonizing) is left out.
#
#   ruby smart_proxy_standin.rb --port 9090 --cert server.crt --key server.key --ca ca.crt \
#        --trusted-hosts foreman.example.com --settings-dir settings.d [--plugin-lib DIR]
#
# --trusted-hosts takes a comma-separated list; an empty string is `[]` (nobody is trusted);
# leaving the option out leaves :trusted_hosts unset (any verified certificate is trusted).
# Readiness: the line "Smart proxy has launched on 1 socket(s), waiting for requests" (the
# real launcher's message) on stdout.

require 'logger'
require 'openssl'
require 'optparse'
require 'ostruct'
require 'uri'
require 'yaml'
require 'rack'
require 'rack/handler/webrick'
require 'sinatra/base'
require 'webrick'
require 'webrick/https'

$stdout.sync = true

module Proxy
  VERSION = '3.10.0-standin'.freeze

  # lib/proxy/error.rb
  module Error
    class ConfigurationError < RuntimeError; end
  end

  # lib/proxy/log.rb + lib/proxy/log_buffer/decorator.rb: `logger` is one shared object whose
  # level methods take (message, exception_or_backtrace = nil). Here it writes to stdout.
  class StandinLogger
    def initialize(io)
      @logger = ::Logger.new(io)
      @logger.formatter = proc { |severity, time, _prog, msg| "#{time.utc.strftime('%FT%T.%3NZ')} #{severity} #{msg}\n" }
    end

    %i[debug info warn error fatal].each do |level|
      define_method(level) do |message = nil, exception = nil, &block|
        message = block.call if message.nil? && block
        @logger.public_send(level, message)
        exception(message, exception) if exception.is_a?(Exception)
      end
    end

    def exception(message, exception)
      @logger.error("#{message}: #{exception.class}: #{exception.message}")
    end

    # WEBrick asks before building debug messages.
    %i[debug? info? warn? error? fatal?].each { |query| define_method(query) { @logger.public_send(query) } }

    # WEBrick calls `<<` for its own log lines (smart-proxy passes the decorator as :Logger).
    def <<(message)
      info(message.to_s.chomp)
    end
  end

  module Log
    LOGGER = StandinLogger.new($stdout)

    def logger
      LOGGER
    end
  end

  # lib/proxy/helpers.rb: only the helpers do_authorize_any reaches.
  module Helpers
    include Proxy::Log

    # Logs the message and halts with it as the body (JSON content type when the client
    # accepts JSON, the body itself stays plain text), as smart-proxy's log_halt does.
    def log_halt(code = nil, exception_or_msg = nil, custom_msg = nil)
      message = exception_or_msg.to_s
      message = "#{custom_msg}: #{message}" if custom_msg
      content_type :json if request.accept?('application/json')
      logger.error message
      halt code, message
    end

    # The client certificate's subject CN, taken from SSL_CLIENT_CERT (the PEM that WEBrick
    # puts in the Rack env) with smart-proxy's pattern: the first `CN=` up to a space, `/` or `,`.
    def https_cert_cn
      pem = request.env['SSL_CLIENT_CERT'].to_s
      log_halt 403, 'could not read client cert from environment' if pem.empty?
      begin
        subject = OpenSSL::X509::Certificate.new(pem).subject.to_s
      rescue OpenSSL::X509::CertificateError => e
        log_halt 403, "could not parse the client certificate\n\n#{e.message}"
      end
      match = %r{CN=([^\s/,]+)}i.match(subject)
      log_halt 403, 'could not read CN from the client certificate' unless match
      match[1]
    end

    # smart-proxy checks plain-HTTP clients by reverse DNS. The stand-in serves HTTPS only.
    def remote_fqdn(_forward_verify = true)
      log_halt 403, 'smart-proxy stand-in: plain HTTP clients are not supported'
    end
  end

  # lib/proxy/settings.rb + settings/global.rb: the global settings the helpers read.
  SETTINGS = OpenStruct.new(:trusted_hosts => nil, :forward_verify => true)

  # lib/proxy/plugins.rb: the registry `plugin` adds itself to.
  class Plugins
    def self.instance
      @instance ||= new
    end

    def loaded
      @loaded ||= []
    end

    def plugin_loaded(name, version, klass)
      loaded << { :name => name, :version => version, :class => klass, :state => :uninitialized }
    end
  end

  # lib/proxy/pluggable.rb + lib/proxy/plugin.rb: the DSL a plugin class is written in.
  class Plugin
    class << self
      attr_reader :plugin_name, :version, :get_https_rackup_path
      attr_writer :settings

      def plugin(name, version)
        @plugin_name = name.to_sym
        @version = version.chomp('-develop')
        Proxy::Plugins.instance.plugin_loaded(@plugin_name, @version, self)
      end

      def default_settings(hash = {})
        plugin_default_settings.merge!(hash)
      end

      def plugin_default_settings
        @plugin_default_settings ||= {}
      end

      def settings_file
        "#{plugin_name}.yml"
      end

      def validate(*names, **params)
        params.delete(:if)
        kind = params.keys.first
        names.each { |name| validations << [kind, name.to_sym] }
      end

      def validate_presence(*names)
        validate(*names, :presence => true)
      end

      def validate_readable(*names)
        validate(*names, :file_readable => true)
      end

      def validations
        @validations ||= []
      end

      def rackup_path(path)
        @get_http_rackup_path = path
        @get_https_rackup_path = path
      end

      def https_rackup
        get_https_rackup_path ? File.read(get_https_rackup_path) : ''
      end

      def settings
        @settings ||= OpenStruct.new
      end
    end
  end

  # lib/proxy/settings/plugin.rb (defaults, :enabled) and lib/proxy/plugin_validators.rb
  # (presence, file_readable, url). smart-proxy marks a plugin that fails validation as
  # failed and starts without it; the stand-in exits instead, so a test fails loudly.
  module PluginLoader
    HTTPS_ENABLED = [true, 'https'].freeze

    def self.configure(plugin, settings_dir)
      path = File.join(settings_dir, plugin.settings_file)
      file = File.exist?(path) ? (YAML.safe_load(File.read(path), :permitted_classes => [Symbol]) || {}) : {}
      values = { :enabled => false }.merge(plugin.plugin_default_settings).merge(file)
      raise Error::ConfigurationError, "#{path}: :enabled: must be true or https" unless HTTPS_ENABLED.include?(values[:enabled])

      plugin.validations.each { |kind, name| check(plugin, kind, name, values[name]) }
      plugin.settings = OpenStruct.new(values)
    end

    def self.check(plugin, kind, name, value)
      case kind
      when :presence
        raise Error::ConfigurationError, "Parameter '#{name}' is expected to have a non-empty value" if value.nil? || value.to_s.empty?
      when :file_readable
        return if value.nil? && !plugin.plugin_default_settings.key?(name)
        raise Error::ConfigurationError, "File at '#{value}' defined in '#{name}' parameter doesn't exist or is unreadable" unless File.readable?(value.to_s)
      when :url
        raise Error::ConfigurationError, "Setting '#{name}' is missing a scheme" if URI.parse(value.to_s).scheme.to_s.empty?
      else
        raise Error::ConfigurationError, "stand-in: unknown validator #{kind} on '#{name}'"
      end
    end
  end
end

# lib/sinatra/authorization.rb: the per-route helpers plugins include.
module Sinatra
  module Authorization
    module Helpers
      def self.included(base)
        base.helpers ::Proxy::Helpers
        base.helpers ::Proxy::Log
      end

      # With :trusted_hosts set, the caller's name must be in it: on HTTPS the client
      # certificate's CN, lowercased. Unset means "no check"; [] refuses everyone.
      # (smart-proxy compares with 1 as an Integer here, so only 'yes'/'on' count as HTTPS.)
      def do_authorize_with_trusted_hosts
        trusted_hosts = Proxy::SETTINGS.trusted_hosts
        return unless trusted_hosts

        logger.debug "verifying remote client #{request.env['REMOTE_ADDR']} against trusted_hosts #{trusted_hosts}"
        fqdn = %w[yes on].include?(request.env['HTTPS'].to_s) ? https_cert_cn : remote_fqdn(Proxy::SETTINGS.forward_verify)
        fqdn = fqdn.downcase
        return if trusted_hosts.include?(fqdn)

        log_halt 403, "Untrusted client #{fqdn} attempted to access #{request.path_info}. Check :trusted_hosts: in settings.yml"
      end

      # On HTTPS a client certificate must have been presented (and WEBrick verified it
      # against the CA: a certificate from another CA fails the handshake).
      def do_authorize_with_ssl_client
        if %w[yes on 1].include?(request.env['HTTPS'].to_s)
          log_halt 403, 'No client SSL certificate supplied' if request.env['SSL_CLIENT_CERT'].to_s.empty?
        else
          logger.debug('require_ssl_client_verification: skipping, non-HTTPS request')
        end
      end

      def do_authorize_any
        do_authorize_with_trusted_hosts
        do_authorize_with_ssl_client
      end
    end
  end
end

# lib/launcher.rb: the HTTPS server.
module Proxy
  class StandinLauncher
    include Proxy::Log

    def initialize(options)
      @options = options
    end

    def launch
      Proxy::SETTINGS.trusted_hosts = @options[:trusted_hosts]
      $LOAD_PATH.unshift(@options[:plugin_lib])
      require 'smart_proxy_registry_gate'

      plugins = Proxy::Plugins.instance.loaded
      raise 'no plugin registered itself' if plugins.empty?

      plugins.each do |p|
        Proxy::PluginLoader.configure(p[:class], @options[:settings_dir])
        p[:state] = :running
        logger.info "'#{p[:name]}' settings: #{p[:class].settings.to_h.inspect}"
        logger.info "Finished initialization of module '#{p[:name]}'"
      end

      # Every running plugin's rackup, evaluated in one builder, as smart-proxy does.
      app = Rack::Builder.new do
        plugins.each { |p| instance_eval(p[:class].https_rackup) }
      end

      server = WEBrick::HTTPServer.new(
        :DoNotListen => true,
        :Port => @options[:port],
        :Logger => logger,
        :AccessLog => [],
        :ServerSoftware => "foreman-proxy/#{Proxy::VERSION}",
        :SSLEnable => true,
        # VERIFY_PEER without FAIL_IF_NO_PEER_CERT: a client may come without a certificate
        # (do_authorize_any then answers 403); one that does not verify fails the handshake.
        :SSLVerifyClient => OpenSSL::SSL::VERIFY_PEER,
        :SSLPrivateKey => OpenSSL::PKey.read(File.read(@options[:key])),
        :SSLCertificate => OpenSSL::X509::Certificate.new(File.read(@options[:cert])),
        :SSLCACertificateFile => @options[:ca],
        :StartCallback => -> { logger.info 'Smart proxy has launched on 1 socket(s), waiting for requests' }
      )
      server.listen(@options[:bind], @options[:port])
      server.mount '/', Rack::Handler::WEBrick, app
      %w[TERM INT].each { |signal| trap(signal) { server.shutdown } }
      server.start
    end
  end
end

if $PROGRAM_NAME == __FILE__
  options = {
    :bind => '127.0.0.1',
    :plugin_lib => File.expand_path('../../smart-proxy-plugin/lib', __dir__),
  }
  OptionParser.new do |o|
    o.on('--port PORT', Integer) { |v| options[:port] = v }
    o.on('--bind ADDRESS') { |v| options[:bind] = v }
    o.on('--cert PEM') { |v| options[:cert] = v }
    o.on('--key PEM') { |v| options[:key] = v }
    o.on('--ca PEM') { |v| options[:ca] = v }
    o.on('--trusted-hosts LIST') { |v| options[:trusted_hosts] = v.split(',').map(&:strip).reject(&:empty?) }
    o.on('--settings-dir DIR') { |v| options[:settings_dir] = v }
    o.on('--plugin-lib DIR') { |v| options[:plugin_lib] = v }
  end.parse!
  missing = %i[port cert key ca settings_dir].reject { |k| options[k] }
  abort "smart_proxy_standin: missing #{missing.map { |k| "--#{k.to_s.tr('_', '-')}" }.join(', ')}" unless missing.empty?

  Proxy::StandinLauncher.new(options).launch
end
