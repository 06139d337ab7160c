"""An OTP-faithful supervision tree whose supervisors and workers are OS processes."""
from ._admin import SupervisorClient as SupervisorClient, root_args as root_args, supervisor_spec as supervisor_spec
from ._child_spec import ChildSpec as ChildSpec, ChildSpecError as ChildSpecError, normalize_child_spec as normalize_child_spec
from ._naming import (NameClash as NameClash, check_names as check_names, child_env as child_env,
                      control_endpoint as control_endpoint, name_clashes as name_clashes)
from ._strategy import (RestartPlan as RestartPlan, intensity_exceeded as intensity_exceeded,
                        record_restart as record_restart, restart_plan as restart_plan,
                        should_restart as should_restart)
from ._supervisor import SUPERVISOR_TARGET as SUPERVISOR_TARGET
from ._tree import Tree as Tree, TreeError as TreeError
