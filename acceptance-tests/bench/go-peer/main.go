// Command terraform-provider-peer is the benchmark's peer: the thinnest Go provider that can be built on this
// machine, so that docs/benchmarks.md can compare terraform-provider-homelab with a plugin rather than only with
// Terraform's built-in terraform_data.
//
// Why it looks like this:
//
//   - It is built offline by `acceptance-tests/dev bench` from Debian's Go packages (go-plugin 1.0.1, grpc-go,
//     go-cty) and from tfplugin6 stubs that protoc generates at bench time out of the repository's own proto/.
//     terraform-plugin-go and terraform-plugin-framework are not packaged in Debian and the module proxy is not
//     reachable, so this speaks tfplugin6 directly, as terraform-plugin-go would, with no framework on top.
//   - Everything that every go-plugin provider pays is kept: go-plugin's Serve (magic cookie, protocol
//     negotiation, a unix socket, AutoMTLS with a fresh server certificate when Terraform passes
//     PLUGIN_CLIENT_CERT, the controller, broker and health services) and a generic, schema-driven codec (go-cty's
//     msgpack, the codec Terraform itself uses) for every value received and returned. What a framework would add
//     (reflection into typed models, validators, plan modifiers) is left out, which is what makes it the thinnest.
//   - One resource, peer_noop, with a computed `id` and an optional `name`, and no backend: create invents an id,
//     read returns the state it was given, delete forgets. That is enough for validate, plan and apply.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	plugin "github.com/hashicorp/go-plugin"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"
	"google.golang.org/grpc"

	tfplugin6 "homelabpeer/tfplugin6"
)

// The type name of the one resource.
const noopType = "peer_noop"

// The value type of peer_noop: what the schema below declares, for the codec.
var noopValueType = cty.Object(map[string]cty.Type{
	"id":   cty.String,
	"name": cty.String,
})

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			// Terraform's cookie; the protocol version is chosen by VersionedPlugins below.
			MagicCookieKey:   "TF_PLUGIN_MAGIC_COOKIE",
			MagicCookieValue: "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2",
		},
		VersionedPlugins: map[int]plugin.PluginSet{
			6: {"provider": &grpcPlugin{}},
		},
		GRPCServer: plugin.DefaultGRPCServer,
	})
}

// grpcPlugin registers the tfplugin6.Provider service on go-plugin's gRPC server. Terraform dispenses the plugin
// named "provider"; the client half is never used by a provider.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	tfplugin6.RegisterProviderServer(s, &provider{})
	return nil
}

func (grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (interface{}, error) {
	return nil, nil
}

// provider answers the RPCs Terraform sends for validate, plan and apply; every other RPC is the generated
// Unimplemented answer.
type provider struct {
	tfplugin6.UnimplementedProviderServer
}

// The same capabilities terraform-plugin-framework announces (and terraform-provider-homelab does): Terraform may
// skip GetProviderSchema on later starts, and plans destroys through PlanResourceChange.
func capabilities() *tfplugin6.ServerCapabilities {
	return &tfplugin6.ServerCapabilities{PlanDestroy: true, GetProviderSchemaOptional: true}
}

func errorDiag(summary string, err error) []*tfplugin6.Diagnostic {
	return []*tfplugin6.Diagnostic{{
		Severity: tfplugin6.Diagnostic_ERROR,
		Summary:  summary,
		Detail:   err.Error(),
	}}
}

func decode(v *tfplugin6.DynamicValue, ty cty.Type) (cty.Value, error) {
	switch {
	case v == nil:
		return cty.NullVal(ty), nil
	case len(v.Msgpack) > 0:
		return ctymsgpack.Unmarshal(v.Msgpack, ty)
	case len(v.Json) > 0:
		return ctyjson.Unmarshal(v.Json, ty)
	default:
		return cty.NullVal(ty), nil
	}
}

func encode(v cty.Value, ty cty.Type) (*tfplugin6.DynamicValue, error) {
	b, err := ctymsgpack.Marshal(v, ty)
	if err != nil {
		return nil, err
	}
	return &tfplugin6.DynamicValue{Msgpack: b}, nil
}

func stringAttr(name, description string, optional, computed bool) *tfplugin6.Schema_Attribute {
	return &tfplugin6.Schema_Attribute{
		Name:        name,
		Type:        []byte(`"string"`),
		Description: description,
		Optional:    optional,
		Computed:    computed,
	}
}

func (*provider) GetMetadata(context.Context, *tfplugin6.GetMetadata_Request) (*tfplugin6.GetMetadata_Response, error) {
	return &tfplugin6.GetMetadata_Response{
		ServerCapabilities: capabilities(),
		Resources:          []*tfplugin6.GetMetadata_ResourceMetadata{{TypeName: noopType}},
	}, nil
}

func (*provider) GetProviderSchema(context.Context, *tfplugin6.GetProviderSchema_Request) (*tfplugin6.GetProviderSchema_Response, error) {
	return &tfplugin6.GetProviderSchema_Response{
		Provider: &tfplugin6.Schema{Block: &tfplugin6.Schema_Block{}},
		ResourceSchemas: map[string]*tfplugin6.Schema{
			noopType: {Block: &tfplugin6.Schema_Block{
				Description: "A resource with no backend.",
				Attributes: []*tfplugin6.Schema_Attribute{
					stringAttr("id", "Made up at create.", false, true),
					stringAttr("name", "Any string; kept as given.", true, false),
				},
			}},
		},
		ServerCapabilities: capabilities(),
	}, nil
}

func (*provider) GetResourceIdentitySchemas(context.Context, *tfplugin6.GetResourceIdentitySchemas_Request) (*tfplugin6.GetResourceIdentitySchemas_Response, error) {
	return &tfplugin6.GetResourceIdentitySchemas_Response{IdentitySchemas: map[string]*tfplugin6.ResourceIdentitySchema{}}, nil
}

func (*provider) ValidateProviderConfig(_ context.Context, req *tfplugin6.ValidateProviderConfig_Request) (*tfplugin6.ValidateProviderConfig_Response, error) {
	if _, err := decode(req.Config, cty.EmptyObject); err != nil {
		return &tfplugin6.ValidateProviderConfig_Response{Diagnostics: errorDiag("Invalid provider configuration", err)}, nil
	}
	return &tfplugin6.ValidateProviderConfig_Response{}, nil
}

func (*provider) ConfigureProvider(_ context.Context, req *tfplugin6.ConfigureProvider_Request) (*tfplugin6.ConfigureProvider_Response, error) {
	if _, err := decode(req.Config, cty.EmptyObject); err != nil {
		return &tfplugin6.ConfigureProvider_Response{Diagnostics: errorDiag("Invalid provider configuration", err)}, nil
	}
	return &tfplugin6.ConfigureProvider_Response{}, nil
}

func (*provider) ValidateResourceConfig(_ context.Context, req *tfplugin6.ValidateResourceConfig_Request) (*tfplugin6.ValidateResourceConfig_Response, error) {
	if _, err := decode(req.Config, noopValueType); err != nil {
		return &tfplugin6.ValidateResourceConfig_Response{Diagnostics: errorDiag("Invalid configuration", err)}, nil
	}
	return &tfplugin6.ValidateResourceConfig_Response{}, nil
}

// UpgradeResourceState: schema version 0 is the only one, so the stored JSON is decoded as it is.
func (*provider) UpgradeResourceState(_ context.Context, req *tfplugin6.UpgradeResourceState_Request) (*tfplugin6.UpgradeResourceState_Response, error) {
	v := cty.NullVal(noopValueType)
	if req.RawState != nil && len(req.RawState.Json) > 0 {
		var err error
		if v, err = ctyjson.Unmarshal(req.RawState.Json, noopValueType); err != nil {
			return &tfplugin6.UpgradeResourceState_Response{Diagnostics: errorDiag("Unreadable state", err)}, nil
		}
	}
	out, err := encode(v, noopValueType)
	if err != nil {
		return &tfplugin6.UpgradeResourceState_Response{Diagnostics: errorDiag("Unencodable state", err)}, nil
	}
	return &tfplugin6.UpgradeResourceState_Response{UpgradedState: out}, nil
}

// ReadResource: there is no backend to ask, so the object is as the state says.
func (*provider) ReadResource(_ context.Context, req *tfplugin6.ReadResource_Request) (*tfplugin6.ReadResource_Response, error) {
	v, err := decode(req.CurrentState, noopValueType)
	if err == nil {
		var out *tfplugin6.DynamicValue
		if out, err = encode(v, noopValueType); err == nil {
			return &tfplugin6.ReadResource_Response{NewState: out, Private: req.Private}, nil
		}
	}
	return &tfplugin6.ReadResource_Response{Diagnostics: errorDiag("Unreadable state", err)}, nil
}

// PlanResourceChange: the proposed state, with `id` unknown on create and kept from the prior state otherwise.
func (*provider) PlanResourceChange(_ context.Context, req *tfplugin6.PlanResourceChange_Request) (*tfplugin6.PlanResourceChange_Response, error) {
	fail := func(err error) (*tfplugin6.PlanResourceChange_Response, error) {
		return &tfplugin6.PlanResourceChange_Response{Diagnostics: errorDiag("Cannot plan", err)}, nil
	}
	prior, err := decode(req.PriorState, noopValueType)
	if err != nil {
		return fail(err)
	}
	proposed, err := decode(req.ProposedNewState, noopValueType)
	if err != nil {
		return fail(err)
	}
	planned := proposed
	if !proposed.IsNull() {
		attrs := proposed.AsValueMap()
		if prior.IsNull() {
			attrs["id"] = cty.UnknownVal(cty.String)
		} else {
			attrs["id"] = prior.GetAttr("id")
		}
		planned = cty.ObjectVal(attrs)
	}
	out, err := encode(planned, noopValueType)
	if err != nil {
		return fail(err)
	}
	return &tfplugin6.PlanResourceChange_Response{PlannedState: out}, nil
}

// ApplyResourceChange: the planned state with a fresh id on create; a destroy (null plan) returns null.
func (*provider) ApplyResourceChange(_ context.Context, req *tfplugin6.ApplyResourceChange_Request) (*tfplugin6.ApplyResourceChange_Response, error) {
	fail := func(err error) (*tfplugin6.ApplyResourceChange_Response, error) {
		return &tfplugin6.ApplyResourceChange_Response{Diagnostics: errorDiag("Cannot apply", err)}, nil
	}
	planned, err := decode(req.PlannedState, noopValueType)
	if err != nil {
		return fail(err)
	}
	state := planned
	if !planned.IsNull() {
		attrs := planned.AsValueMap()
		if !attrs["id"].IsKnown() {
			var b [6]byte
			if _, err := rand.Read(b[:]); err != nil {
				return fail(err)
			}
			attrs["id"] = cty.StringVal("noop-" + hex.EncodeToString(b[:]))
		}
		state = cty.ObjectVal(attrs)
	}
	out, err := encode(state, noopValueType)
	if err != nil {
		return fail(err)
	}
	return &tfplugin6.ApplyResourceChange_Response{NewState: out, Private: req.PlannedPrivate}, nil
}

// StopProvider: nothing ever runs long enough to be cancelled.
func (*provider) StopProvider(context.Context, *tfplugin6.StopProvider_Request) (*tfplugin6.StopProvider_Response, error) {
	return &tfplugin6.StopProvider_Response{}, nil
}
