#!/usr/bin/ruby
# Katello's side of the container gateway sync, as a long-running driver for tests.
#
# Reads one JSON object per line on stdin and makes the call exactly as Katello makes it:
# Katello's ProxyAPI::ContainerGateway (lib/proxy_api/container_gateway.rb) appends the call's
# name to `<proxy url>/container_gateway`; Foreman's ProxyAPI::Resource
# (app/services/proxy_api/resource.rb) builds one RestClient::Resource with its headers and
# client certificate and calls `resource[""].put(payload_hash)` or `resource.get({})`.
# rest-client 2.1.0 form-encodes the Hash (no JSON anywhere) and `[""]` adds a trailing slash.
#
#   {"call":"repository_list","payload":{"repositories":[{"repository":"a/b","auth_required":true}]}}
#   {"call":"users"}
#   {"call":"update_hosts","payload":{...},"trailing_slash":false}   (a test-only variation)
#
# Writes one JSON line per call: {"status":200,"body":"","content_type":"...","elapsed_ms":12}
# or, when no HTTP answer came at all, {"status":null,"error":"<class>: <message>",...}.
# rest-client raises on a non-2xx answer; its status and body are reported like any other.
#
#   ruby katello_sync_client.rb --url https://127.0.0.1:9090 --ca ca.crt [--cert c.crt --key c.key]

require 'json'
require 'openssl'
require 'optparse'
require 'securerandom'
require 'rest-client'

$stdout.sync = true

# Katello's payload builders (app/models/katello/concerns/smart_proxy_extensions.rb) produce
# Hashes with Symbol keys, String logins / host UUIDs as keys, and true/false booleans. JSON
# gives String keys: rebuild the exact Ruby shapes (key types and key order) from it.
module KatelloPayload
  def self.repo(entry)
    { repository: entry['repository'], auth_required: entry['auth_required'] }
  end

  # `[{name => [{repository:, auth_required:}, ...]}, ...]` (logins or host UUIDs as keys).
  def self.mapping(list)
    list.map { |element| element.to_h { |name, repos| [name, repos.nil? ? nil : repos.map { |r| repo(r) }] } }
  end

  BUILDERS = {
    'repository_list' => ->(p) { { repositories: p['repositories'].map { |r| repo(r) } } },
    'user_repository_mapping' => ->(p) { { users: mapping(p['users']) } },
    'update_hosts' => ->(p) { { hosts: p['hosts'].map { |h| { uuid: h['uuid'] } } } },
    'host_repository_mapping' => ->(p) { { hosts: mapping(p['hosts']) } },
    'update_host_repositories' => ->(p) { { hosts: mapping(p['hosts']) } },
  }.freeze

  def self.build(call, payload)
    builder = BUILDERS.fetch(call) { raise ArgumentError, "unknown sync call #{call.inspect}" }
    builder.call(payload)
  end
end

options = {}
OptionParser.new do |o|
  o.on('--url URL') { |v| options[:url] = v }
  o.on('--ca PEM') { |v| options[:ca] = v }
  o.on('--cert PEM') { |v| options[:cert] = v }
  o.on('--key PEM') { |v| options[:key] = v }
end.parse!
abort 'katello_sync_client: --url and --ca are required' unless options[:url] && options[:ca]

# Foreman's connect_params: timeout from Setting[:proxy_request_timeout] (default 60), no
# user (so no Authorization header), and ssl_auth_params for an https proxy URL.
connect_params = {
  timeout: 60,
  headers: { accept: :json, x_request_id: nil, x_session_id: nil },
  user: nil,
  password: nil,
  force_direct: true,
  ssl_ca_file: options[:ca],
  verify_ssl: OpenSSL::SSL::VERIFY_PEER,
}
if options[:cert]
  connect_params[:ssl_client_cert] = OpenSSL::X509::Certificate.new(File.read(options[:cert]))
  connect_params[:ssl_client_key] = OpenSSL::PKey.read(File.read(options[:key]))
end

def perform(base, connect_params, request)
  call = request.fetch('call')
  # A fresh ProxyAPI object per call, with its own request and session ids.
  params = connect_params.merge(headers: { accept: :json, x_request_id: SecureRandom.uuid, x_session_id: SecureRandom.uuid })
  resource = RestClient::Resource.new("#{base}/container_gateway/#{call}", params)
  slash = request.fetch('trailing_slash', call != 'users')
  target = slash ? resource[''] : resource
  response =
    if call == 'users'
      target.get({})
    else
      target.put(KatelloPayload.build(call, request.fetch('payload')))
    end
  { status: response.code, body: response.body, content_type: response.headers[:content_type] }
rescue RestClient::ExceptionWithResponse => e
  raise unless e.response

  { status: e.response.code, body: e.response.body, content_type: e.response.headers[:content_type] }
end

$stdin.each_line do |line|
  next if line.strip.empty?

  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  answer =
    begin
      perform(options[:url], connect_params, JSON.parse(line))
    rescue StandardError => e
      { status: nil, body: nil, content_type: nil, error: "#{e.class}: #{e.message}" }
    end
  answer[:elapsed_ms] = ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - started) * 1000).round
  puts JSON.generate(answer)
end
