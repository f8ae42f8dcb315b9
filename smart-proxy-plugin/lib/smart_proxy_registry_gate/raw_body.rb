module Proxy
  module RegistryGate
    # Keeps Rack (and so Sinatra) from parsing request bodies.
    #
    # Sinatra::Base#dispatch! merges `request.params` into `params` before any route runs, and
    # Rack::Request#POST parses every application/x-www-form-urlencoded body to get them. The
    # relay must hand the sidecar Katello's bytes untouched, and Rack's parser would refuse
    # large syncs on its own (rack >= 2.2.14: more than 4096 params or 4 MiB is an error).
    #
    # Rack::Request#POST returns `rack.request.form_hash` without reading anything when
    # `rack.request.form_input` is the request's `rack.input` (its parse cache). We fill that
    # cache with an empty hash, so the body stays unread in `rack.input` for the route.
    class RawBody
      def initialize(app)
        @app = app
      end

      def call(env)
        env['rack.request.form_input'] = env['rack.input']
        env['rack.request.form_hash'] = {}
        @app.call(env)
      end
    end
  end
end
