"""The data model: attrs records and the one converter that puts them on the wire."""

from tinytown.model.agent import AGENT_TRANSITIONS as AGENT_TRANSITIONS
from tinytown.model.agent import Agent as Agent
from tinytown.model.agent import validate_agent_name as validate_agent_name
from tinytown.model.converter import converter as converter
from tinytown.model.converter import dumps as dumps
from tinytown.model.converter import loads as loads
from tinytown.model.enums import BUILTIN_ROLES as BUILTIN_ROLES
from tinytown.model.enums import AgentState as AgentState
from tinytown.model.enums import AgentType as AgentType
from tinytown.model.enums import MessageType as MessageType
from tinytown.model.enums import Priority as Priority
from tinytown.model.enums import SpawnMode as SpawnMode
from tinytown.model.enums import TaskState as TaskState
from tinytown.model.ids import SUPERVISOR_ID as SUPERVISOR_ID
from tinytown.model.ids import new_id as new_id
from tinytown.model.ids import now as now
from tinytown.model.message import (
    AckType as AckType,
)
from tinytown.model.message import (
    Confirmation as Confirmation,
)
from tinytown.model.message import (
    Custom as Custom,
)
from tinytown.model.message import (
    Informational as Informational,
)
from tinytown.model.message import (
    Message as Message,
)
from tinytown.model.message import (
    Ping as Ping,
)
from tinytown.model.message import (
    Pong as Pong,
)
from tinytown.model.message import (
    Query as Query,
)
from tinytown.model.message import (
    Shutdown as Shutdown,
)
from tinytown.model.message import (
    StatusRequest as StatusRequest,
)
from tinytown.model.message import (
    StatusResponse as StatusResponse,
)
from tinytown.model.message import (
    TaskAssign as TaskAssign,
)
from tinytown.model.message import (
    TaskBody as TaskBody,
)
from tinytown.model.message import (
    TaskDone as TaskDone,
)
from tinytown.model.message import (
    TaskFailed as TaskFailed,
)
from tinytown.model.task import Task as Task
from tinytown.model.usage import Budget as Budget
from tinytown.model.usage import Usage as Usage
