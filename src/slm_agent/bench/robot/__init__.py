"""A ROS-native robot task suite on the demo robot (registered as ``robot``).

Twelve tasks (:mod:`.tasks`) ask the agent to drive the demo robot
(:class:`slm_agent.demo_robot.DemoRobot`), work its gripper, chain both, and
refuse a move outside its safety envelope; each is scored by the robot's final
state (:mod:`.suite`), read through the run's world (``CaseContext.world``),
never by what the agent said.  Plain Python; the benchmark node serves the
robot's actions as ROS services.
"""
