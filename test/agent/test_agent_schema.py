"""Schema derivation from real ROS interface types, and JSON <-> message conversion."""
from __future__ import annotations

import math

import jsonschema
import pytest

from slm_agent.agent.schema import (
    SchemaError,
    apply_overrides,
    import_interface,
    json_to_request,
    message_schema,
    response_to_dict,
    service_request_class,
    tool_parameters_schema,
)


def test_setbool_schema():
    schema, defaults = tool_parameters_schema("std_srvs/srv/SetBool")
    assert schema == {
        "type": "object",
        "properties": {"data": {"type": "boolean"}},
        "required": ["data"],
        "additionalProperties": False,
    }
    assert defaults == {}


@pytest.mark.parametrize("stype", ["std_srvs/srv/Trigger", "std_srvs/srv/Empty", "slm_agent/srv/GetBattery"])
def test_argumentless_services_give_empty_objects(stype):
    schema, _ = tool_parameters_schema(stype)
    assert schema["properties"] == {} and schema["required"] == []
    assert schema["additionalProperties"] is False
    jsonschema.validate({}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"x": 1}, schema)


def test_moveto_nested_schema_from_introspection():
    schema = message_schema(service_request_class("slm_agent/srv/MoveTo"))
    props = schema["properties"]
    assert list(props) == ["frame_id", "goal", "via", "speed", "mode"]
    assert props["frame_id"] == {"type": "string", "maxLength": 32}
    waypoint = {
        "type": "object",
        "properties": {"x": {"type": "number"}, "y": {"type": "number"}, "theta": {"type": "number"}},
        "required": ["x", "y", "theta"],
        "additionalProperties": False,
    }
    assert props["goal"] == waypoint
    assert props["via"] == {"type": "array", "items": waypoint, "maxItems": 8}
    assert props["speed"] == {"type": "number"}
    assert props["mode"]["type"] == "integer" and props["mode"]["maximum"] == 255
    assert props["mode"]["enum"] == [0, 1]
    assert "MODE_DIRECT=0" in props["mode"]["description"] and "MODE_PATH=1" in props["mode"]["description"]
    jsonschema.Draft202012Validator.check_schema(schema)


def test_integer_ranges_arrays_and_unbounded_sequences():
    # PowerMode.Response: int32, int32[] (unbounded), string[]
    resp = import_interface("slm_agent/srv/PowerMode").Response
    props = message_schema(resp)["properties"]
    assert props["current_id"] == {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
    assert props["mode_ids"] == {"type": "array", "items": {"type": "integer", "minimum": -(2**31),
                                                            "maximum": 2**31 - 1}}
    assert props["mode_names"] == {"type": "array", "items": {"type": "string"}}
    # a fixed-size array: geometry_msgs/PoseWithCovariance.covariance is float64[36]
    cov = message_schema(import_interface("geometry_msgs/msg/PoseWithCovariance"))["properties"]["covariance"]
    assert cov["minItems"] == cov["maxItems"] == 36 and cov["items"] == {"type": "number"}
    uint8 = message_schema(import_interface("std_msgs/msg/UInt8"))["properties"]["data"]
    assert (uint8["minimum"], uint8["maximum"]) == (0, 255)
    u64 = message_schema(import_interface("std_msgs/msg/UInt64"))["properties"]["data"]
    assert u64["maximum"] == 2**64 - 1


def test_demo_tool_set_bounds_merge(demo_tool_set):
    move = demo_tool_set.by_name()["move_to"].parameters
    goal = move["properties"]["goal"]["properties"]
    assert (goal["x"]["minimum"], goal["x"]["maximum"]) == (-10, 10)
    assert (goal["y"]["minimum"], goal["y"]["maximum"]) == (-10, 10)
    via_item = move["properties"]["via"]["items"]["properties"]
    assert (via_item["x"]["minimum"], via_item["x"]["maximum"]) == (-10, 10)
    assert move["properties"]["via"]["maxItems"] == 8
    assert move["properties"]["frame_id"]["maxLength"] == 32
    speed = move["properties"]["speed"]
    assert speed["exclusiveMinimum"] == 0 and speed["maximum"] == 1.5 and "minimum" not in speed
    assert move["properties"]["mode"]["enum"] == [0, 1]
    assert move["required"] == ["goal", "speed"]  # the rest have defaults or are optional
    v = jsonschema.Draft202012Validator(move)
    assert v.is_valid({"goal": {"x": 1, "y": 2}, "speed": 0.5})
    assert not v.is_valid({"goal": {"x": 11, "y": 2}, "speed": 0.5})
    assert not v.is_valid({"goal": {"x": 1, "y": 2}, "speed": 0})
    assert not v.is_valid({"goal": {"x": 1, "y": 2}, "speed": 1.6})
    assert not v.is_valid({"goal": {"x": 1, "y": 2}, "speed": 1, "via": [{"x": 0, "y": 0}] * 9})
    assert not v.is_valid({"goal": {"x": 1, "y": 2}, "speed": 1, "mode": 2})


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"goal.z": {"minimum": 0}}, "no field 'z'"),
        ({"mode": {"minimum": -1}}, "outside the type's range"),
        ({"frame_id": {"minimum": 0}}, "needs a numeric field"),
        ({"mode": {"enum": [0, 7]}}, "not among"),
        ({"frame_id": {"maxLength": 40}}, "exceeds the type's limit 32"),
        ({"speed": {"minimum": 2, "maximum": 1}}, "above upper bound"),
        ({"speed": {"colour": "red"}}, "unknown key"),
        ({"goal[].x": {"minimum": 0}}, "not an array"),
        ({"speed": {"default": "fast"}}, "default 'fast' is invalid"),
    ],
)
def test_bad_overrides_name_the_field(fields, message):
    with pytest.raises(SchemaError, match=message):
        tool_parameters_schema("slm_agent/srv/MoveTo", fields)


def test_bad_type_strings():
    with pytest.raises(SchemaError, match="pkg/srv/Type"):
        import_interface("slm_agent.srv.MoveTo")
    with pytest.raises(SchemaError, match="cannot import"):
        import_interface("no_such_pkg/srv/Foo")
    with pytest.raises(SchemaError, match="has no type"):
        import_interface("std_srvs/srv/NoSuchThing")
    with pytest.raises(SchemaError, match="not a service"):
        service_request_class("std_msgs/msg/String")


def test_json_to_request_nested_defaults_and_sequences(demo_tool_set):
    spec = demo_tool_set.by_name()["move_to"]
    req_cls = service_request_class(spec.service_type)
    req = json_to_request(
        req_cls,
        {"goal": {"x": 1, "y": -2.5}, "via": [{"x": 0.5, "y": 0.5}], "speed": 1, "mode": 1},
        spec.defaults,
    )
    assert type(req).__name__ == "MoveTo_Request"
    assert req.goal.x == 1.0 and isinstance(req.goal.x, float) and req.goal.y == -2.5
    assert req.goal.theta == 0.0  # default from the tool set
    assert len(req.via) == 1 and req.via[0].x == 0.5 and req.via[0].theta == 0.0
    assert req.speed == 1.0 and req.mode == 1 and req.frame_id == "map"


@pytest.mark.parametrize(
    "args, message",
    [
        ({"goal": {"x": 1, "y": 2, "theta": 0}, "speed": 1, "mode": 256}, "outside the uint8 range"),
        ({"goal": {"x": 1, "y": 2, "theta": 0}, "speed": 1, "frame_id": "m" * 33}, "exceeds the maximum 32"),
        ({"goal": {"x": 1, "y": 2, "theta": 0}, "speed": 1, "via": [{"x": 0, "y": 0, "theta": 0}] * 9},
         "exceed the maximum 8"),
        ({"goal": {"x": 1, "y": 2, "theta": 0, "z": 1}, "speed": 1}, "unknown field"),
        ({"goal": {"x": "1", "y": 2, "theta": 0}, "speed": 1}, "expected a number"),
        ({"goal": {"x": 1, "y": 2, "theta": 0}, "speed": float("nan")}, "not a finite"),
        ({"goal": {"x": 1, "y": 2, "theta": 0}, "speed": 1e39}, "not a finite float"),
        ({"goal": {"x": 1, "y": 2, "theta": 0}, "speed": True}, "expected a number"),
        ({"goal": {"x": 1, "y": 2, "theta": 0}, "speed": 1, "mode": 0.5}, "expected an integer"),
        ({"goal": [1, 2], "speed": 1}, "expected an object"),
    ],
)
def test_json_to_request_is_strict_on_its_own(args, message):
    with pytest.raises(ValueError, match=message):
        json_to_request(service_request_class("slm_agent/srv/MoveTo"), args)


def test_json_to_request_bool_is_not_int():
    req_cls = service_request_class("std_srvs/srv/SetBool")
    assert json_to_request(req_cls, {"data": True}).data is True
    with pytest.raises(ValueError, match="true/false"):
        json_to_request(req_cls, {"data": 1})


def test_response_to_dict_nested_arrays_and_float32_rounding():
    move = import_interface("slm_agent/srv/MoveTo").Response()
    move.success, move.message, move.duration_s = True, "ok", 2.5
    move.reached.x = 1.5
    assert response_to_dict(move) == {
        "success": True, "message": "ok", "reached": {"x": 1.5, "y": 0.0, "theta": 0.0}, "duration_s": 2.5,
    }
    pm = import_interface("slm_agent/srv/PowerMode").Response()
    pm.mode_ids = [0, 2]
    pm.mode_names = ["MAXN", "30W"]
    d = response_to_dict(pm)
    assert d["mode_ids"] == [0, 2] and d["mode_names"] == ["MAXN", "30W"]
    batt = import_interface("slm_agent/srv/GetBattery").Response()
    batt.percentage = 0.1  # float32 on the wire: 0.10000000149011612 unrounded
    batt.voltage = float("nan")
    d = response_to_dict(batt)
    assert d["percentage"] == 0.1 and d["voltage"] == "NaN" and d["charging"] is False
    cov = import_interface("geometry_msgs/msg/PoseWithCovariance")()
    out = response_to_dict(cov)
    assert out["covariance"] == [0.0] * 36 and isinstance(out["covariance"], list)
    byte = import_interface("std_msgs/msg/Byte")()
    assert response_to_dict(byte) == {"data": 0}


def test_round_trip_through_schema_and_message():
    """Whatever validates against the derived schema converts without error."""
    schema, _ = apply_overrides(message_schema(service_request_class("slm_agent/srv/MoveTo")), {})
    args = {"frame_id": "map", "goal": {"x": 1.0, "y": 2.0, "theta": 0.5}, "via": [], "speed": 0.5, "mode": 0}
    jsonschema.validate(args, schema)
    req = json_to_request(service_request_class("slm_agent/srv/MoveTo"), args)
    back = response_to_dict(req)
    assert back == args
    assert not math.isnan(back["speed"])
