"""The live rooms: exam room sockets, the room hub, chat, notifications (docs/rooms.md)."""
