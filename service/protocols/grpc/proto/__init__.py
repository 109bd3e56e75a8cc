"""protoc's output for grpc_predict_v2.proto (`make proto`): regenerated, never edited."""
